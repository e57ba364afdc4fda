"""Issue 15, items 1-4: conv latents' spatial dependence in the tests, compare and the shift CI.

Smoothed exact-N(0, 1) fields (independent items and channels, unit marginal variance,
lag-1 correlation up to 0.94; see ``conv_fields``) are what a good latent-diffusion latent
looks like: the report must not reject its own prior more often than alpha, and compare
must not call two independent draws changed. Before the fix every joint test and every
headline Holm family rejected such fields in (nearly) every draw, and compare flagged KS
changes in 15 of 20 seeds.

Bands: with R independent draws of a test of level alpha, the rejection count is
Binomial(R, alpha); each count is checked against its 0.999 quantile, so a calibrated
test fails a check with probability < 0.001 (the seeds are fixed, so the outcome is too).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conv_fields import lag1_correlation, sigma_for_rho, smoothed_fields
from scipy import stats

import latentcheck as lc
from latentcheck.analysis.api import analyze_with_sample
from latentcheck.stats.spatial.design_effect import ItemMeansAccumulator, item_mean_intervals

ALPHA = 0.05


def _band(r: int, alpha: float = ALPHA) -> int:
    """Return the 0.999 quantile of Binomial(r, alpha): the most rejections allowed."""
    return int(stats.binom.ppf(0.999, r, alpha))


def _analyses(rng, reps, n_items, channels, shape, rho, **kw):
    out = []
    for r in range(reps):
        x = smoothed_fields(rng, n_items, channels, shape, sigma_for_rho(rho), **kw)
        with warnings.catch_warnings():
            # few independent rows per dimension make some sample tests warn
            warnings.simplefilter("ignore", lc.LatentcheckWarning)
            out.append(analyze_with_sample(x, seed=r, threads=1))
    return out


def test_issue_15_fields_are_exact_unit_variance_with_the_stated_correlation():
    # the generator itself: unit marginal variance and the lag-1 correlation asked for
    rng = np.random.default_rng(0)
    sigma = sigma_for_rho(0.9)
    assert lag1_correlation((16, 16), sigma) == pytest.approx(0.9, abs=1e-6)
    x = smoothed_fields(rng, 400, 2, (16, 16), sigma)
    # 400 items x 2 channels, design effect ~ 2 pi sigma^2 ~ 15 positions per item
    assert x.var() == pytest.approx(1.0, abs=0.02)
    assert stats.pearsonr(x[..., :-1].ravel(), x[..., 1:].ravel())[0] == pytest.approx(
        0.9, abs=0.01
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reps", "n_items", "channels", "shape", "rho"),
    [(16, 20, 8, (16, 16), 0.94), (10, 40, 4, (32, 32), 0.8)],
)
def test_issue_15_conv_report_and_compare_hold_their_level(reps, n_items, channels, shape, rho):
    """Joint tests, the headline per-dim Holm family and compare, on exact N(0, 1) fields."""
    rng = np.random.default_rng(15 + n_items)
    runs = _analyses(rng, reps, n_items, channels, shape, rho)
    dims_rej: dict[str, int] = {}
    joint_rej: dict[str, int] = {}
    for a in runs:
        for name, t in a.report.dims.tests.items():
            dims_rej[name] = dims_rej.get(name, 0) + int(np.nanmin(t.pvalue_holm) < ALPHA)
        for name, t in a.report.joint.tests.items():
            joint_rej[name] = joint_rej.get(name, 0) + int(t.pvalue < ALPHA)
    bound = _band(reps)
    assert max(dims_rej.values()) <= bound, dims_rej
    assert max(joint_rej.values()) <= bound, joint_rej
    assert len(joint_rej) == 8
    for a in runs:
        rep = a.report
        sp = rep.spatial
        assert sp["headline_tests"]["rows"] == "separated_positions"
        # the headline is the separated-position family; all positions are kept beside
        for name, t in rep.dims.tests.items():
            np.testing.assert_array_equal(
                np.nan_to_num(np.asarray(t.pvalue_holm, float), nan=-1),
                np.nan_to_num(
                    np.array(sp["separated_tests"]["tests"][name]["pvalue_holm"], float), nan=-1
                ),
            )
        assert set(sp["all_positions_tests"]["tests"]) == set(rep.dims.tests)
        assert rep.summary.dims_rejected == {
            name: int(np.sum(np.asarray(t.pvalue_holm) < ALPHA))
            for name, t in rep.dims.tests.items()
        }
        for name, t in rep.joint.tests.items():
            assert t.reason is None, (name, t.reason)
            assert "well-separated" in t.method, (name, t.method)

    # compare: disjoint pairs of independent draws, from rows and from saved reports
    pairs = [(runs[i], runs[i + 1]) for i in range(0, reps - 1, 2)]
    flagged = {"rows": 0, "saved": 0, "ks": 0, "joint": 0}
    for a, b in pairs:
        c = lc.compare(a, b, seed=0).comparisons[0]
        assert c.test == "ks"
        flagged["rows"] += c.changed
        flagged["ks"] += bool(np.nanmin(c.dims.ks.pvalue_adjusted) < ALPHA)
        flagged["joint"] += c.joint.pvalue < ALPHA
        cs = lc.compare(a.report.to_dict(), b.report.to_dict(), seed=0).comparisons[0]
        assert cs.test == "moments"
        flagged["saved"] += cs.changed
    # "changed" is the union of the per-dim family and a 3-test Holm family: 2 alpha at most
    assert max(flagged.values()) <= _band(len(pairs), 2 * ALPHA), flagged


@pytest.mark.slow
def test_issue_15_conv_report_still_detects_t5_fields():
    # power: the same dependence with t(5) marginals (a copula of the smoothed field)
    rng = np.random.default_rng(5)
    (a,) = _analyses(rng, 1, 100, 4, (16, 16), 0.5, noise="t5")
    rep = a.report
    rows = rep.spatial["headline_tests"]["n_rows"]
    assert rows >= 1000  # 16 separated positions per item at rho 0.5
    assert rep.summary.dims_rejected["shapiro"] >= 3
    assert rep.joint.tests["mardia_kurtosis"].pvalue < 1e-3
    assert rep.joint.tests["henze_zirkler"].pvalue < 1e-3


@pytest.mark.slow
def test_issue_15_compare_still_detects_a_scaled_channel():
    rng = np.random.default_rng(7)
    a, b = _analyses(rng, 2, 100, 4, (16, 16), 0.5)
    x = smoothed_fields(rng, 100, 4, (16, 16), sigma_for_rho(0.5))
    x[:, 2] *= 1.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lc.LatentcheckWarning)
        c = lc.compare(a, analyze_with_sample(x, seed=1, threads=1), seed=0).comparisons[0]
        c0 = lc.compare(a, b, seed=0).comparisons[0]
    assert c.changed and 2 in c.moved_dims and c.joint.pvalue < ALPHA
    assert not c0.changed


def _z_interval_ddof0(m: np.ndarray) -> np.ndarray:
    """The pre-issue-15 half-width: z quantile, ddof 0 over item means."""
    return 1.959963984540054 * m.std(axis=0) / math.sqrt(m.shape[0])


def test_issue_15_conv_shift_interval_covers_at_20_items():
    # Student t(N - 1), ddof = 1 over the items' means: exact coverage for Gaussian fields
    rng = np.random.default_rng(4)
    reps, n_items, c, shape = 2000, 20, 2, (8, 8)
    sigma = sigma_for_rho(0.9)
    p = math.prod(shape)
    covered = covered_g = covered_old = 0
    for _ in range(reps):
        x = smoothed_fields(rng, n_items, c, shape, sigma).reshape(n_items, c, -1)
        rows = np.moveaxis(x, 1, -1).reshape(-1, c)  # LatentSource layout: channels last
        acc = ItemMeansAccumulator(c, p, rows.mean(axis=0))
        acc.push(rows[: 7 * p], np.arange(7 * p))
        other = ItemMeansAccumulator(c, p, rows.mean(axis=0))
        other.push(rows[7 * p :], np.arange(7 * p, rows.shape[0]))
        acc = acc.merge(other)
        res = item_mean_intervals(acc)
        assert res is not None
        half, half_g = res
        mean = rows.mean(axis=0)
        covered += int(np.sum(np.abs(mean) <= half))
        covered_g += int(abs(mean.mean()) <= half_g)
        covered_old += int(np.sum(np.abs(mean) <= _z_interval_ddof0(x.mean(axis=2))))
    lo, hi = stats.binom.interval(0.999, reps * c, 0.95)
    assert lo <= covered <= hi, covered / (reps * c)
    lo_g, hi_g = stats.binom.interval(0.999, reps, 0.95)
    assert lo_g <= covered_g <= hi_g, covered_g / reps
    assert covered_old < lo  # the old interval undercovers (about 0.93)


def test_issue_15_item_mean_intervals_match_scipy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 3, 4, 4)) + np.array([0.0, 1.0, -2.0])[None, :, None, None]
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3)
    acc = ItemMeansAccumulator(3, 16, rows.mean(axis=0))
    acc.push(rows, np.arange(rows.shape[0]))
    half, half_g = item_mean_intervals(acc)
    m = x.reshape(12, 3, -1).mean(axis=2)
    for j in range(3):
        lo, hi = stats.t.interval(0.95, 11, loc=m[:, j].mean(), scale=stats.sem(m[:, j]))
        assert half[j] == pytest.approx((hi - lo) / 2, rel=1e-12)
    g = m.mean(axis=1)
    lo, hi = stats.t.interval(0.95, 11, loc=g.mean(), scale=stats.sem(g))
    assert half_g == pytest.approx((hi - lo) / 2, rel=1e-12)
    one = ItemMeansAccumulator(3, 16, rows.mean(axis=0))
    one.push(rows[:16], np.arange(16))
    assert item_mean_intervals(one) is None


@pytest.mark.parametrize("n_items", [1, 2])
def test_issue_15_too_few_items_leave_the_conv_tests_unrun(n_items):
    # one or two items of strongly correlated fields give one or two independent rows:
    # the headline and joint tests say they could not run instead of rejecting (with one
    # item the correlation about the position means is undefined; the one about the
    # channel mean sets the gap, not 0)
    x = smoothed_fields(np.random.default_rng(0), n_items, 4, (16, 16), sigma_for_rho(0.94))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lc.LatentcheckWarning)
        rep = lc.analyze(x, seed=0, threads=1)
    sp = rep.spatial
    assert sp["separation_gap"] == [16, 16]
    assert sp["headline_tests"]["n_rows"] == n_items
    assert all(v == 0 for v in rep.summary.dims_rejected.values())
    # Shapiro-Wilk needs 3 rows (ks_prior runs on 2 independent rows, validly)
    assert np.all(np.isnan(np.asarray(rep.dims.tests["shapiro"].pvalue, float)))
    for name, t in rep.joint.tests.items():
        assert t.reason is not None, name
    all_sw = sp["all_positions_tests"]["tests"]["shapiro"]["pvalue_holm"]
    assert len(all_sw) == 4


def test_issue_15_independent_sample_picks_the_separated_positions():
    from latentcheck.analysis.spatial import independent_sample

    rng = np.random.default_rng(2)
    x = smoothed_fields(rng, 30, 3, (12, 12), sigma_for_rho(0.6))
    a = analyze_with_sample(x, seed=3, threads=1)
    pos = np.asarray(a.report.spatial["separated_positions"])
    assert 1 < pos.size < 144
    rows = independent_sample(a.report, a.sample, a.row_ids)
    flat = x.reshape(30, 3, -1)
    want = np.moveaxis(flat[:, :, pos], 1, -1).reshape(-1, 3)  # every item, those positions
    np.testing.assert_array_equal(
        np.sort(rows, axis=0), np.sort(want, axis=0)
    )  # the sample holds every row here
    assert independent_sample(lc.analyze(rng.standard_normal((50, 3))), a.sample, a.row_ids) is None
