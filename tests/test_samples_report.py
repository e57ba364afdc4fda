"""The report runs on every shipped sample, from the CLI, as the README's quick start does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentcheck.cli import cli

SAMPLES = Path(__file__).parent.parent / "sample_latents"
FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".npy", ".npz"))


def test_every_sample_is_covered():
    assert len(FILES) == 7


@pytest.mark.parametrize("name", FILES)
def test_report_runs_on_each_sample(runner, name):
    res = runner.invoke(cli, ["report", str(SAMPLES / name), "--format", "json"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["input"]["n_samples"] >= 1797
    stochastic = name.endswith(".npz") and name != "ae_beta0.npz"
    assert (rep["posterior"] is not None) == stochastic
    assert (rep["spatial"] is not None) == name.startswith("conv")
    text = runner.invoke(cli, ["report", str(SAMPLES / name)]).stdout
    assert max(len(line) for line in text.splitlines()) <= 100
