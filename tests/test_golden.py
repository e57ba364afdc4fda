"""Golden reports: the text and JSON output on fixed data, against tests/golden/.

Set LATENTCHECK_UPDATE_GOLDEN=1 (``make golden-update``) to rewrite the files after an
intended change, then review the diff (tests/golden/README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_json_close

import latentcheck as lc

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent
SAMPLES = ROOT / "sample_latents"
UPDATE = os.environ.get("LATENTCHECK_UPDATE_GOLDEN") == "1"
# settings that describe the machine, not the data
SCRUB = {"created_at", "version", "threads", "chunk_rows"}


def _scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("<scrubbed>" if k in SCRUB else _scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if name.endswith(".json"):
        assert_json_close(json.loads(text), json.loads(expected), rel=1e-9)
    else:
        assert text == expected


def _analyze(name: str) -> lc.Report:
    """Analyse a sample by its path relative to the repository (as the README runs it)."""
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        return lc.analyze(f"sample_latents/{name}", seed=0, threads=1)
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def report() -> lc.Report:
    return _analyze("kl_beta1e-4_z.npy")


def test_golden_text(report):
    _check("kl_beta1e-4_z.txt", report.to_text().replace(lc.__version__, "<version>"))


def test_golden_json(report):
    text = json.dumps(_scrub(report.to_dict()), indent=2, allow_nan=False) + "\n"
    _check("kl_beta1e-4_z.json", text)


def test_golden_markdown(report):
    _check("kl_beta1e-4_z.md", report.to_markdown())


def test_golden_posterior_text():
    rep = _analyze("vae_beta1.npz")
    _check("vae_beta1.txt", rep.to_text().replace(lc.__version__, "<version>"))


def test_golden_files_are_not_stale():
    names = {p.name for p in GOLDEN.iterdir()}
    expected = {
        "README.md",
        "kl_beta1e-4_z.txt",
        "kl_beta1e-4_z.json",
        "kl_beta1e-4_z.md",
        "vae_beta1.txt",
    }
    assert names == expected


def test_golden_data_is_fixed():
    # the golden files describe this exact input; a changed sample file changes them
    z = np.load(SAMPLES / "kl_beta1e-4_z.npy", allow_pickle=False)
    assert z.shape == (1797, 16) and z.dtype == np.float32
