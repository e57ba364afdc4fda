"""The report runs on every shipped sample, from the CLI, as the README's quick start does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentcheck.cli import cli

SAMPLES = Path(__file__).parent.parent / "sample_latents"
FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".npy", ".npz"))


def test_every_sample_is_covered():
    assert len(FILES) == 9


@pytest.mark.parametrize("name", FILES)
def test_report_runs_on_each_sample(runner, name):
    res = runner.invoke(cli, ["report", str(SAMPLES / name), "--format", "json"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    if name.startswith("ldm_"):
        # conv latents of 13 photo crops (issue 21): one row per crop and position
        n, _, h, w = np.load(SAMPLES / name, mmap_mode="r").shape
        assert rep["input"]["n_samples"] == n * h * w
    else:
        assert rep["input"]["n_samples"] >= 1797
    stochastic = name.endswith(".npz") and name != "ae_beta0.npz"
    assert (rep["posterior"] is not None) == stochastic
    assert (rep["spatial"] is not None) == name.startswith(("conv", "ldm_"))
    text = runner.invoke(cli, ["report", str(SAMPLES / name)]).stdout
    assert max(len(line) for line in text.splitlines()) <= 100
