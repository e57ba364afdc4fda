"""Practical parts of the report: conv spatial block, claimed normalisations, the verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats as st

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.verdict import outlier_finding, rate_finding


def _ar1_field(rng, n, c, h, w, rho):
    """Separable AR(1) field with unit variance and lag-1 correlation rho on each axis."""
    z = rng.standard_normal((n, c, h, w))
    s = math.sqrt(1 - rho**2)
    for i in range(1, h):
        z[:, :, i, :] = rho * z[:, :, i - 1, :] + s * z[:, :, i, :]
    for j in range(1, w):
        z[:, :, :, j] = rho * z[:, :, :, j - 1] + s * z[:, :, :, j]
    return z


@pytest.fixture(scope="module")
def conv_report():
    rng = np.random.default_rng(3)
    x = _ar1_field(rng, 400, 3, 8, 8, 0.6)
    x[:, 1] = 2.0 * x[:, 1] + 1.0
    return x, lc.analyze(x, seed=0)


def test_conv_report_has_spatial_block(conv_report):
    x, rep = conv_report
    sp = rep.spatial
    assert sp is not None and sp["spatial_shape"] == [8, 8] and sp["n_items"] == 400
    # lag-1 Pearson correlation along H equals numpy's on the shifted arrays
    a = x[:, 0, 1:, :].ravel()
    b = x[:, 0, :-1, :].ravel()
    np.testing.assert_allclose(
        sp["autocorrelation_pearson"][0][0], np.corrcoef(a, b)[0, 1], rtol=1e-9
    )
    # within a sample: deviations from the per-position means, as numpy computes them
    dev = x - x.mean(axis=0)
    within = (dev[:, 0, 1:, :] * dev[:, 0, :-1, :]).mean() / (dev[:, 0] ** 2).mean()
    np.testing.assert_allclose(sp["autocorrelation_within"][0][0], within, rtol=1e-9)
    # the simulated field has rho = 0.6 on both axes (Monte-Carlo tolerance 0.03)
    assert abs(sp["autocorrelation_within"][1][1] - 0.6) < 0.03
    assert np.array(sp["mean_map"]).shape == (3, 8, 8)
    sep = sp["separated_tests"]
    assert sep["n_positions"] >= 1 and set(sep["tests"]) >= {"shapiro", "ks_prior"}
    text = rep.to_text()
    assert "SPATIAL (conv latents, 400 samples of 8x8 positions)" in text


def test_design_effect_is_the_variance_of_sample_means(conv_report):
    x, rep = conv_report
    sp = rep.spatial
    p = 64
    for c in range(3):
        item_means = x[:, c].reshape(400, -1).mean(axis=1)
        deff = p * item_means.var() / x[:, c].var()
        np.testing.assert_allclose(sp["design_effect_mean"][c], deff, rtol=1e-9)
        dev2 = (x[:, c] - x[:, c].mean()) ** 2
        deff_v = p * dev2.reshape(400, -1).mean(axis=1).var() / dev2.var()
        np.testing.assert_allclose(sp["design_effect_var"][c], deff_v, rtol=1e-9)
    np.testing.assert_allclose(
        sp["effective_sample_size"], 400 * 64 / np.array(sp["design_effect_mean"]), rtol=1e-12
    )
    assert all(d > 2 for d in sp["design_effect_mean"])  # rho = 0.6 makes positions alike


def test_a_fixed_spatial_pattern_gives_a_design_effect_below_one():
    rng = np.random.default_rng(5)
    pattern = np.linspace(-3, 3, 16).reshape(1, 1, 4, 4)
    x = pattern + rng.standard_normal((2000, 1, 4, 4))
    rep = lc.analyze(x)
    # independent noise around a fixed per-position mean: positions of a sample differ more
    # than random rows do, so averages over a sample are more precise (stratification)
    assert rep.spatial["design_effect_mean"][0] < 0.5


def test_conv_normalisation_intervals_are_rescaled(conv_report):
    # issue 15: the shift intervals of conv latents are Student t(N - 1) intervals over the
    # N items' channel means (ddof = 1), not z intervals rescaled by the design effect
    from scipy import stats

    x, rep = conv_report
    nz = rep.summary.normalization
    item_means = x.reshape(400, 3, -1).mean(axis=2)
    q = stats.t.ppf(0.975, 399)
    half = (nz.per_dim_shift_ci[:, 1] - nz.per_dim_shift_ci[:, 0]) / 2
    np.testing.assert_allclose(half, q * item_means.std(0, ddof=1) / math.sqrt(400), rtol=1e-9)
    g = item_means.mean(axis=1)
    g_half = (nz.shift_ci[1] - nz.shift_ci[0]) / 2
    np.testing.assert_allclose(g_half, q * g.std(ddof=1) / math.sqrt(400), rtol=1e-9)
    # the std intervals are still rescaled by the design effect of the variance
    assert np.all(np.isfinite(nz.per_dim_scale_ci))


def test_row_data_has_no_spatial_block():
    rep = lc.analyze(np.random.default_rng(0).standard_normal((500, 3)))
    assert rep.spatial is None and rep.to_dict()["spatial"] is None


def test_assume_scale_names_the_mistakes(runner, latents_file):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3000, 4)) * 5.5 + 0.8  # needs scale ~0.18 and a shift
    path = latents_file(z.astype(np.float32), name="z.npy")
    res = runner.invoke(cli, ["report", str(path), "--format", "json", "--assume-scale", "0.13025"])
    assert res.exit_code == 0, res.stderr
    check = json.loads(res.stdout)["summary"]["normalization_check"]
    np.testing.assert_allclose(check["normalized_std"], z.std() * 0.13025, rtol=1e-6)
    np.testing.assert_allclose(check["normalized_mean"], z.mean() * 0.13025, rtol=1e-6)
    assert check["known_constant"] == "Stable Diffusion XL" or "XL" in check["known_constant"]
    assert "other_vae_constant" in check["mistakes"] and "missing_shift" in check["mistakes"]
    ok = lc.analyze(z, assume_scale=1 / z.std(), assume_shift=z.mean())
    assert ok.summary.normalization_check["verdict"] == "ok"
    with pytest.raises(lc.InputError, match="`assume_scale` must be"):
        lc.analyze(z, assume_scale=-1.0)
    assert lc.analyze(z).summary.normalization_check is None


@pytest.mark.parametrize(
    "level, n_values, observed, status, word",
    [
        (1, 28_752, 0, "ok", "Tails as a Gaussian's"),  # 1.8 expected: no evidence
        (1, 115_000, 0, "ok", "Outliers suppressed"),  # 7.3 expected: P(0) = 0.0007
        (0, 28_752, 30, "ok", "Outliers suppressed"),  # 77.6 expected at 3 std
        (0, 28_752, 80, "ok", "Tails as a Gaussian's"),
        (1, 100_000, 40, "warn", "Heavy tails"),  # 6.3 expected at 4 std
    ],
)
def test_outlier_verdict_uses_counts(level, n_values, observed, status, word):
    levels = np.array([3.0, 4.0])
    expected = np.array([math.erfc(k / math.sqrt(2)) for k in levels])
    rates = expected.copy()  # the other level exactly as a Gaussian's
    rates[level] = observed / n_values
    f = outlier_finding(rates, expected, levels, n_values)
    assert f.status == status and f.text.startswith(word), f.text


def test_poisson_tails_match_scipy():
    from latentcheck.verdict import poisson_tails

    lo, hi = poisson_tails(3, 7.5)
    assert lo == pytest.approx(st.poisson.cdf(3, 7.5), rel=1e-12)
    assert hi == pytest.approx(st.poisson.sf(2, 7.5), rel=1e-12)


def test_rate_finding_handles_zero_rate():
    # regression: a rate of exactly 0 used to print "nan nats"
    f = rate_finding({"rate_nats": 0.0, "rate_mean_part_nats": 0.0, "collapsed_dims": [0, 1]})
    assert "pays 0 nats per row" in f.text and "nan" not in f.text
    mu = np.zeros((500, 2))
    with pytest.warns(lc.DegenerateDimensionWarning, match="total rate is 0 nats"):
        rep = lc.analyze(mu=mu, logvar=np.zeros((500, 2)), seed=0)
    assert rep.posterior["rate_nats"] == 0.0
    assert "nan" not in rep.summary.verdict


def test_conv_posterior_reports_rate_per_sample():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((60, 2, 3, 3))
    lv = rng.uniform(-1, 0, mu.shape)
    rep = lc.analyze(mu=mu, logvar=lv)
    p = rep.posterior
    assert p["rows_per_sample"] == 9
    np.testing.assert_allclose(p["rate_per_sample_nats"], 9 * p["rate_nats"], rtol=1e-12)
    per_input = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(axis=(1, 2, 3)).mean()
    np.testing.assert_allclose(p["rate_per_sample_nats"], per_input, rtol=1e-10)


def test_outlier_verdict_without_rates_is_a_note():
    levels = np.array([3.0, 4.0])
    f = outlier_finding(np.array([np.nan, np.nan]), np.array([0.0027, 6e-5]), levels, 100)
    assert f.status == "note" and "could not be computed" in f.text


def test_item_means_accumulator_merges_and_skips_incomplete_samples():
    from latentcheck.stats.spatial.design_effect import ItemMeansAccumulator, design_effects

    rng = np.random.default_rng(2)
    rows = rng.standard_normal((40, 3))  # 10 samples of 4 positions
    ids = np.arange(40)
    center = rows.mean(0)
    whole = ItemMeansAccumulator(3, 4, center)
    whole.push(rows, ids)
    a, b = ItemMeansAccumulator(3, 4, center), ItemMeansAccumulator(3, 4, center)
    a.push(rows[:20], ids[:20])
    b.push(rows[20:], ids[20:])
    merged = a + b
    np.testing.assert_allclose(merged.m2_m, whole.m2_m, rtol=1e-12)
    np.testing.assert_allclose(merged.mean_v, whole.mean_v, rtol=1e-12)
    # rows of sample 2 partly missing and shuffled: that sample is left out and counted
    keep = np.r_[0:9, 10:40]
    order = rng.permutation(keep.size)
    part = ItemMeansAccumulator(3, 4, center)
    part.push(rows[keep][order], ids[keep][order])
    assert part.n == 9 and part.dropped == 1
    m = rows.reshape(10, 4, 3).mean(axis=1)
    dm, _ = design_effects(whole, rows.var(0), ((rows - center) ** 4).mean(0))
    np.testing.assert_allclose(dm, 4 * m.var(0) / rows.var(0), rtol=1e-12)
