"""The LDM case study in docs/case-study-ldm.md quotes exactly what latentcheck computes.

docs/make_case_study_ldm.py runs the tool over the two latent-diffusion samples (issue 21)
and fills the document; the slow test regenerates it in memory and compares it with the
committed file, so a change of any figure fails here until the document is regenerated with
``python docs/make_case_study_ldm.py``. The fast tests check the script's own arithmetic
(the Gaussian twin and the border counts) against independent numpy computations.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from helpers import assert_document_fresh, load_doc_script

import latentcheck as lc

REPO = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    return load_doc_script("make_case_study_ldm")


@pytest.mark.slow
def test_issue_21_case_study_matches_a_fresh_run() -> None:
    assert_document_fresh(
        "case-study-ldm.md", "make_case_study_ldm", _load_script().build_case_study()
    )


def test_issue_21_crop_list_matches_the_samples() -> None:
    crops = _load_script().CROPS
    for name in ("ldm_taef2.npy", "ldm_taesana.npy"):
        shape = np.load(REPO / "sample_latents" / name, mmap_mode="r").shape
        assert shape[0] == len(crops)


def test_issue_21_twin_has_the_asked_moments_and_lag1_correlation() -> None:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 3))
    offset = np.array([1.0, 0.0, -2.0]).reshape(3, 1, 1)
    z = np.einsum("ij,njhw->nihw", mix, rng.normal(size=(40, 3, 24, 24))) + offset
    rho = (0.6, 0.3)
    t = _load_script().twin(z, rho, seed=1)
    assert t.shape == z.shape
    x = np.moveaxis(z, 1, -1).reshape(-1, 3)
    y = np.moveaxis(t, 1, -1).reshape(-1, 3)
    # 23,040 rows with a design effect near (1.6/0.4)(1.3/0.7) = 7.4: SE of a mean about
    # sqrt(7.4 / 23040) = 0.018 std, of a covariance entry about 0.03; 0.15 is > 5 SE
    np.testing.assert_allclose(y.mean(axis=0), x.mean(axis=0), atol=0.15 * x.std(axis=0).max())
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.cov(x, rowvar=False), atol=0.15 * 3)
    # stationary AR(1) with unit variance: the lag-1 correlation along each axis is rho
    # (each channel is a mix of the AR fields, which share rho, so the channel has it too)
    dev = t - t.mean(axis=(0, 2, 3), keepdims=True)
    for axis, r in ((2, rho[0]), (3, rho[1])):
        a = np.take(dev, np.arange(23), axis=axis)
        b = np.take(dev, np.arange(1, 24), axis=axis)
        est = (a * b).sum(axis=(0, 2, 3)) / np.sqrt(
            (a * a).sum(axis=(0, 2, 3)) * (b * b).sum(axis=(0, 2, 3))
        )
        np.testing.assert_allclose(est, r, atol=0.05)


def test_issue_21_border_counts_match_a_direct_count() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_t(3, size=(6, 2, 9, 9))
    d = lc.analyze(z, seed=0, threads=1).to_dict()
    ring_hits, total, ring_share = _load_script()._border_counts(d, 1)  # level 4 std
    levels = d["spatial"]["outlier_levels"]
    assert levels[1] == 4.0
    # independent count: values beyond 4 std (ddof 0, over all rows) of their channel mean
    mean = z.mean(axis=(0, 2, 3), keepdims=True)
    std = z.std(axis=(0, 2, 3), keepdims=True)
    beyond = np.abs(z - mean) > 4 * std
    ring = np.ones((9, 9), bool)
    ring[1:-1, 1:-1] = False
    assert total == int(beyond.sum())
    assert ring_hits == int(beyond[:, :, ring].sum())
    assert ring_share == pytest.approx(ring.mean())


@pytest.mark.parametrize(
    ("x", "digits", "text"),
    [(0.0, 3, "0"), (1.2056, 4, "1.206"), (-0.0272688, 3, "-0.0273"), (None, 3, "—")],
)
def test_number_format(x: float | None, digits: int, text: str) -> None:
    assert _load_script().num(x, digits) == text


def test_get_reads_missing_keys_as_default() -> None:
    get = _load_script()._get
    d = {"a": {"b": [1, {"c": 2}]}}
    assert get(d, "a", "b", 1, "c") == 2
    assert get(d, "a", "x", default="—") == "—"
    assert get(d, "a", "b", 5) is None
