"""Issue 22: the in-place seeded draw gives bitwise the numbers of its closed form."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from latentcheck.engine.accumulators import hash_rows
from latentcheck.io.posterior import DrawSource, resolve_inputs, standard_normal


def _closed_form(index: np.ndarray, seed: int) -> np.ndarray:
    """Box-Muller on two hashed 53-bit uniforms, written as the formula (the code before)."""
    h1 = hash_rows(index, seed)
    h2 = hash_rows(index, seed ^ 0x5DEECE66D)
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    out: np.ndarray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_issue_22_standard_normal_is_bitwise_the_closed_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scattered = rng.integers(0, 2**62, size=1001)
    block = (np.arange(300)[:, None] * 64 + np.arange(64)).astype(np.int64)
    for index in (scattered, block, block[:1, :1]):
        got = standard_normal(index, seed)
        want = _closed_form(index, seed)
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))


def test_issue_22_draw_source_is_bitwise_mu_plus_sigma_eps(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    n, d = 1000, 8
    mu = rng.standard_normal((n, d)).astype(np.float32)
    logvar = rng.uniform(-6.0, 2.0, (n, d)).astype(np.float32)
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "lv.npy", logvar)
    _, post = resolve_inputs(
        None,
        mu=[str(tmp_path / "mu.npy")],
        logvar=[str(tmp_path / "lv.npy")],
        std=None,
        var=None,
        key=None,
        channel_axis=1,
        flatten=False,
    )
    assert post is not None
    src = DrawSource(post, seed=5)
    got = np.concatenate([src.read_items(i, min(i + 300, n)) for i in range(0, n, 300)])
    src.close()
    index = np.arange(n * d, dtype=np.int64).reshape(n, d)
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    want = mu64 + np.exp(0.5 * lv64) * _closed_form(index, 5)
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
