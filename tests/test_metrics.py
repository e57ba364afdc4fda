"""Issue 18: flat metrics for experiment trackers, checked against independent formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.metrics import REPORT_METRICS


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(18)
    return rng.standard_normal((3000, 4)) * [1.0, 1.5, 0.7, 1.0] + [0.2, 0.0, -0.5, 0.1]


@pytest.fixture(scope="module")
def report(data: np.ndarray) -> lc.Report:
    return lc.analyze(data, seed=0, energy_resamples=9)


def test_issue_18_to_metrics_matches_closed_forms(data: np.ndarray, report: lc.Report) -> None:
    m = report.to_metrics()
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    mean, std = data.mean(axis=0), data.std(axis=0)
    kl = 0.5 * (mean**2 + std**2 - 1 - np.log(std**2))  # KL(N(m, s²) || N(0, 1))
    assert m["latents/kl_gauss_sum"] == pytest.approx(kl.sum(), rel=1e-12)
    assert m["latents/shift"] == pytest.approx(data.mean(), rel=1e-12)
    assert m["latents/scale"] == pytest.approx(1 / data.std(), rel=1e-12)
    assert m["latents/scale_rms"] == pytest.approx(1 / np.sqrt(np.mean(data**2)), rel=1e-12)
    assert m["latents/std_min"] == pytest.approx(std.min(), rel=1e-12)
    assert m["latents/std_max"] == pytest.approx(std.max(), rel=1e-12)
    for k in (3, 4):
        assert m[f"latents/prior_outlier_rate/{k}"] == np.mean(np.abs(data) > k)
        rate = np.mean(np.abs(data - mean) > k * std)
        assert m[f"latents/outlier_ratio/{k}"] == pytest.approx(
            rate / math.erfc(k / math.sqrt(2)), rel=1e-12
        )
    eig = np.linalg.eigvalsh(np.cov(data.T))
    assert m["latents/effective_dims"] == pytest.approx(eig.sum() ** 2 / (eig**2).sum(), 1e-10)
    assert m["latents/negentropy_max"] == np.nanmax(report.dims.negentropy)
    statuses = [f.status for f in report.summary.findings]
    for s in ("ok", "note", "warn"):
        assert m[f"latents/verdict/{s}"] == statuses.count(s)
    assert m["latents/n_samples"] == 3000
    # every key is documented, and the prefix is the caller's
    names = {k.removeprefix("latents/").split("/")[0] for k in m}
    assert names <= {k.split("/")[0] for k in REPORT_METRICS}
    assert set(report.to_metrics(prefix="val/")) == {"val/" + k[8:] for k in m}


def test_issue_18_metrics_leave_out_what_is_unavailable() -> None:
    z = np.random.default_rng(1).standard_normal((50, 60))  # d >= N: no joint part
    with pytest.warns(lc.LatentcheckWarning):
        m = lc.analyze(z, seed=0, test_samples=20, allow_few_rows=True).to_metrics()
    assert "latents/effective_dims" not in m and "latents/kl_gauss_sum" in m


def test_issue_18_format_metrics_prints_json_lines(runner, latents_file, data, report) -> None:
    path = latents_file(data)
    res = runner.invoke(
        cli, ["report", str(path), "--format", "metrics", "--energy-resamples", "9"]
    )
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.splitlines()]
    assert {d["name"]: d["value"] for d in lines} == report.to_metrics()


def test_issue_18_comparison_metrics(data: np.ndarray) -> None:
    other = data * 1.3
    cmp = lc.compare(data, other, seed=0, joint_test_samples=300, n_permutations=19)
    m = cmp.to_metrics()
    assert m["latents/A/scale"] == pytest.approx(1 / data.std(), rel=1e-12)
    assert m["latents/B/scale"] == pytest.approx(1 / other.std(), rel=1e-12)
    assert m["latents/B/delta/scale"] == pytest.approx(1 / other.std() - 1 / data.std(), 1e-9)
    pair = cmp.comparisons[0]
    assert m["latents/B/changed"] == float(pair.changed)
    assert m["latents/B/moved_dims"] == len(pair.moved_dims)
    statuses = [f.status for f in pair.findings]
    assert m["latents/B/verdict/warn"] == statuses.count("warn")
    assert all(math.isfinite(v) for v in m.values())


def test_issue_18_posterior_metrics_match_the_closed_form_rate() -> None:
    rng = np.random.default_rng(3)
    mu = rng.standard_normal((2000, 3)) * [1.0, 0.3, 0.001]
    logvar = np.log(rng.uniform(0.2, 0.9, (2000, 3)))
    rep = lc.analyze(mu=mu, logvar=logvar, seed=0, energy_resamples=0, mixture_samples=64)
    m = rep.to_metrics()
    # E_x Σ_j KL(N(mu, σ²) || N(0, 1)) = ½ Σ_j E(mu² + σ² − 1 − ln σ²)
    rate = 0.5 * np.mean(np.sum(mu**2 + np.exp(logvar) - 1 - logvar, axis=1))
    assert m["latents/rate_nats"] == pytest.approx(rate, rel=1e-10)
    assert m["latents/active_units"] == np.sum(mu.var(axis=0) > 0.01)  # Burda et al. 2016


def test_issue_18_compare_format_metrics(runner, latents_file, data) -> None:
    a, b = latents_file(data), latents_file(data * 1.3)
    res = runner.invoke(
        cli,
        ["compare", str(a), str(b), "--format", "metrics", "--joint-test-samples", "300"],
    )
    assert res.exit_code in (0, 1), res.stderr  # 1: the inputs differ (exit code of compare)
    lines = {d["name"]: d["value"] for d in map(json.loads, res.stdout.splitlines())}
    assert lines["latents/B/scale"] == pytest.approx(1 / (1.3 * data.std()), rel=1e-12)
    assert lines["latents/A/n_samples"] == 3000
