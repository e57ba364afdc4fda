"""`compare` (issue 5): two-sample statistics, flags, calibration, JSON contract, CLI."""

from __future__ import annotations

import json
import math
from importlib import resources

import jsonschema
import numpy as np
import pytest
import scipy.stats as ss
from scipy.spatial.distance import cdist
from statsmodels.stats.multitest import multipletests

import latentcheck as lc
from latentcheck.analysis.api import analyze_with_sample
from latentcheck.cli import cli
from latentcheck.comparison.api import COMPARE_SCHEMA_VERSION
from latentcheck.errors import InputError, LatentcheckWarning, SchemaError
from latentcheck.stats.twosample import (
    adjust_pvalues,
    energy_two_sample,
    global_tests,
    ks_columns,
    moment_tests,
    wasserstein_columns,
)

#: Skips the O(d²) joint part of the analyses (and its costly tests) where a test needs only
#: the per-dimension statistics; the analysis then warns that it skipped it.
FAST = {"max_joint_dims": 1}
SKIPPED = "Joint statistics skipped"


def fast_compare(*inputs, **kw):
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        return lc.compare(*inputs, **FAST, **kw)


def schema() -> dict:
    text = resources.files("latentcheck").joinpath("schema/compare.schema.json").read_text()
    return json.loads(text)


def validate(cmp) -> dict:
    data = json.loads(cmp.to_json())
    jsonschema.validate(data, schema())
    return data


def energy_direct(x, y):
    """Székely & Rizzo's E from full distance matrices (the literal V-statistic formula)."""
    return 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()


# ---------------------------------------------------------------------------------------
# Statistics against independent implementations
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_y", [300, 257])
def test_wasserstein_columns_matches_scipy(n_y):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3))
    y = rng.standard_t(4, (n_y, 3)) * 1.3 + 0.2
    got = wasserstein_columns(x, y)
    want = [ss.wasserstein_distance(x[:, j], y[:, j]) for j in range(3)]
    # the same integral summed in another order: agreement to rounding
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_ks_columns_statistic_and_pvalue():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 3))
    y = rng.standard_normal((350, 3)) + np.array([0.0, 0.3, 0.0])
    stat, p, method = ks_columns(x, y)
    grid = np.sort(np.concatenate([x, y]), axis=0)
    for j in range(3):
        fx = np.searchsorted(np.sort(x[:, j]), grid[:, j], side="right") / 400
        fy = np.searchsorted(np.sort(y[:, j]), grid[:, j], side="right") / 350
        # D = sup |F_x - F_y| is attained at a data point; scipy forms the CDFs in another
        # order, so they agree to rounding
        np.testing.assert_allclose(stat[j], np.max(np.abs(fx - fy)), rtol=1e-14)
        ref = ss.ks_2samp(x[:, j], y[:, j], method="exact")
        np.testing.assert_allclose(p[j], ref.pvalue, rtol=1e-12)  # same exact algorithm
    assert "exact" in method


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("block_size", [1, 7, 60, 500])
def test_energy_statistic_matches_direct_formula(standardize, block_size):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 4)) * [1, 2, 0.5, 1]
    y = rng.standard_normal((45, 4)) + np.array([0.4, 0, 0, 0])
    res = energy_two_sample(x, y, n_permutations=0, standardize=standardize, block_size=block_size)
    xs, ys = x, y
    if standardize:
        sd = np.vstack([x, y]).std(axis=0)
        xs, ys = x / sd, y / sd
    e = energy_direct(xs, ys)
    # distances from the Gram identity lose ~1e-15 relative per pair; E is a difference
    # of means about 10x larger than itself
    np.testing.assert_allclose(res.statistic, e, rtol=1e-10)
    np.testing.assert_allclose(res.effect_size, e / (2 * cdist(xs, ys).mean()), rtol=1e-10)
    assert math.isnan(res.pvalue)


def test_energy_one_dimension_is_scipy_energy_distance_squared():
    rng = np.random.default_rng(4)
    u, v = rng.standard_normal(200), rng.exponential(size=150)
    res = energy_two_sample(u[:, None], v[:, None], n_permutations=0, standardize=False)
    # scipy: sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) from the CDFs; the V-statistic is its square
    np.testing.assert_allclose(res.statistic, ss.energy_distance(u, v) ** 2, rtol=1e-10)


def test_energy_permutation_pvalue_extremes_and_determinism():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 3))
    same = energy_two_sample(x, x.copy(), n_permutations=99, seed=0)
    # distances of coincident rows from the Gram identity are ~1e-8, not 0: E ~ 1e-10
    assert same.statistic == pytest.approx(0.0, abs=1e-9) and same.pvalue == 1.0
    far = energy_two_sample(x, x + 5.0, n_permutations=99, seed=0)
    assert far.pvalue == 1 / 100  # no relabelling separates the samples better
    again = energy_two_sample(x, x + 0.2, n_permutations=99, seed=7)
    assert again == energy_two_sample(x, x + 0.2, n_permutations=99, seed=7)


def test_energy_small_samples_skip_with_warning():
    with pytest.warns(lc.SmallSampleWarning, match="at least 2 rows per sample, got 1 and 5"):
        res = energy_two_sample(np.zeros((1, 2)), np.ones((5, 2)))
    assert res.reason and math.isnan(res.statistic)
    with pytest.raises(InputError, match="same number of columns"):
        energy_two_sample(np.zeros((3, 2)), np.zeros((3, 3)))


@pytest.mark.parametrize("method, sm_name", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_matches_statsmodels(method, sm_name):
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2, 0.001, np.nan, 0.5])
    got = adjust_pvalues(p, method)
    ok = np.isfinite(p)
    want = multipletests(p[ok], method=sm_name)[1]
    np.testing.assert_allclose(got[ok], want, rtol=1e-14)  # the same closed form
    assert np.isnan(got[~ok]).all()


def test_moment_tests_against_the_formulas():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((3000, 2)), rng.laplace(size=(2000, 2)) * 0.8 + 0.05
    mean = (a.mean(0), b.mean(0))
    std = (a.std(0), b.std(0))
    g2 = (ss.kurtosis(a), ss.kurtosis(b))
    zm, pm, zs, ps = moment_tests((3000, 2000), mean, std, g2)
    # Welch's statistic with the normal reference, written with scipy's helper (ddof=0
    # stds given as they are, so the statistic is the same expression)
    t = ss.ttest_ind_from_stats(mean[1], std[1], 2000, mean[0], std[0], 3000, equal_var=False)
    np.testing.assert_allclose(zm, t.statistic, rtol=1e-12)
    np.testing.assert_allclose(pm, 2 * ss.norm.sf(np.abs(zm)), rtol=1e-12)
    # Layard: Var(ln s) ≈ (κ − 1) / (4n) with κ = g2 + 3
    se = np.sqrt((g2[0] + 2) / (4 * 3000) + (g2[1] + 2) / (4 * 2000))
    np.testing.assert_allclose(zs, np.log(std[1] / std[0]) / se, rtol=1e-12)
    np.testing.assert_allclose(ps, 2 * ss.norm.sf(np.abs(zs)), rtol=1e-12)


def test_global_tests_against_direct_standard_errors():
    from latentcheck.stats.scale import normalization

    rng = np.random.default_rng(7)
    cov = np.array([[1.0, 0.6], [0.6, 1.0]])
    a = rng.multivariate_normal([0, 0], cov, 4000)
    b = rng.multivariate_normal([0.05, 0.0], cov, 3000) * 1.1

    def norm(x):
        m = x.mean(0)
        c = x - m
        cs = np.cov(x.T, ddof=0).sum()
        return normalization(len(x), m, (c**2).sum(0), (c**4).sum(0), cov_sum=cs)

    res = global_tests(norm(a), norm(b))
    # Var(global mean) = 1'S1 / (n d²), S the population covariance of each data set
    se = [np.sqrt(np.cov(x.T, ddof=0).sum() / (len(x) * 4)) for x in (a, b)]
    z = (b.mean() - a.mean()) / np.hypot(*se)
    np.testing.assert_allclose(res["shift"].statistic, z, rtol=1e-9)  # through the 95% CI
    np.testing.assert_allclose(res["shift"].pvalue, 2 * ss.norm.sf(abs(z)), rtol=1e-9)
    # the global std of all values about the global mean
    np.testing.assert_allclose(res["scale"].effect_size, np.log(b.std() / a.std()), rtol=1e-9)


# ---------------------------------------------------------------------------------------
# compare: what it flags
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_shift_of_a_tenth_sigma_in_one_dim_of_20000_rows_is_flagged_alone(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((20_000, 8))
    b = rng.standard_normal((20_000, 8))
    b[:, 5] += 0.1
    cmp = fast_compare(a, b, seed=seed)
    c = cmp.comparisons[0]
    assert c.moved_dims == (5,)
    assert c.test == "ks" and c.test_rows == (20_000, 20_000)
    assert c.dims.effect_reasons[5][0] == "shift"
    assert c.changed and c.findings[0].status == "warn"
    assert c.findings[1].status == "ok"  # the global scale and shift did not change


def test_rescaling_all_dimensions_is_flagged_in_the_summary():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((5000, 6))
    b = rng.standard_normal((5000, 6)) * 1.15
    c = fast_compare(a, b).comparisons[0]
    scale = next(f for f in c.findings if f.aspect == "scale")
    assert scale.status == "warn" and "Global scale changed" in scale.text
    assert c.summary_pvalues_adjusted["scale"] < 1e-10
    np.testing.assert_allclose(c.summary_tests["scale"].effect_size, np.log(1.15), atol=0.02)
    assert c.moved_dims == tuple(range(6))
    ratio = c.summary_deltas["scale"]["ratio"]
    np.testing.assert_allclose(ratio, 1 / 1.15, rtol=0.02)


def test_identical_inputs_compare_equal():
    a = np.random.default_rng(9).standard_normal((3000, 4))
    c = fast_compare(a, a.copy()).comparisons[0]
    assert not c.changed and c.moved_dims == ()
    np.testing.assert_array_equal(c.dims.ks.statistic, 0.0)
    np.testing.assert_array_equal(c.dims.wasserstein, 0.0)
    assert c.summary_deltas["kl_marginal_sum"]["delta"] == 0.0


def test_heavier_tails_move_by_distribution_not_by_moments():
    rng = np.random.default_rng(10)
    a = rng.standard_normal((20_000, 3))
    b = rng.standard_normal((20_000, 3))
    b[:, 1] = rng.laplace(size=20_000) / np.sqrt(2)  # mean 0, std 1, kurtosis 3
    c = fast_compare(a, b).comparisons[0]
    assert c.moved_dims == (1,)
    assert "shift" not in c.dims.effect_reasons[1] and "kl" in c.dims.effect_reasons[1]


def test_permuted_dimensions_get_a_correspondence_note():
    rng = np.random.default_rng(21)
    scales = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    a = rng.standard_normal((3000, 5)) * scales
    b = rng.standard_normal((3000, 5)) * scales[::-1]
    c = fast_compare(a, b, n_permutations=0).comparisons[0]
    notes = [f.text for f in c.findings if f.status == "note"]
    assert any(t.startswith("The dimensions may not correspond") for t in notes)
    assert c.profiles["std"]["mean_abs_diff"] < 0.05  # the sorted profiles agree
    same = fast_compare(a, rng.standard_normal((3000, 5)) * scales, n_permutations=0)
    assert all(f.status != "note" for f in same.comparisons[0].findings)


def test_bh_correction_end_to_end():
    rng = np.random.default_rng(11)
    a, b = (
        rng.standard_normal((2000, 5)),
        rng.standard_normal((2000, 5)) + np.array([0, 0, 0.3, 0, 0]),
    )
    c = fast_compare(a, b, correction="bh").comparisons[0]
    # KS and the Brown-Forsythe scale test form one family (issue 15, item 13)
    family = np.concatenate([c.dims.ks.pvalue, c.dims.scale_test.pvalue])
    np.testing.assert_allclose(
        np.concatenate([c.dims.ks.pvalue_adjusted, c.dims.scale_test.pvalue_adjusted]),
        ss.false_discovery_control(family),
        rtol=1e-14,
    )
    assert c.moved_dims == (2,)


def test_ks_and_wasserstein_are_computed_on_the_seeded_samples():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((1500, 3)), rng.gamma(4.0, size=(1200, 3))
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        sa, sb = analyze_with_sample(a, seed=3, **FAST), analyze_with_sample(b, seed=3, **FAST)
    c = lc.compare(sa, sb, dim_test_samples=1000, n_permutations=0).comparisons[0]
    x, y = sa.sample[:1000], sb.sample[:1000]
    for j in range(3):
        ref = ss.ks_2samp(x[:, j], y[:, j])
        np.testing.assert_allclose(c.dims.ks.statistic[j], ref.statistic, rtol=1e-15)
        np.testing.assert_allclose(c.dims.ks.pvalue[j], ref.pvalue, rtol=1e-12)
        w = ss.wasserstein_distance(x[:, j], y[:, j])
        np.testing.assert_allclose(c.dims.wasserstein[j], w, rtol=1e-12)
        bf = ss.levene(x[:, j], y[:, j], center="median")
        np.testing.assert_allclose(c.dims.scale_test.statistic[j], bf.statistic, rtol=1e-12)
        np.testing.assert_allclose(c.dims.scale_test.pvalue[j], bf.pvalue, rtol=1e-10)
    assert c.test_rows == (1000, 1000)
    family = np.concatenate([c.dims.ks.pvalue, c.dims.scale_test.pvalue])
    holm = multipletests(family, method="holm")[1]
    np.testing.assert_allclose(c.dims.ks.pvalue_adjusted, holm[:3], rtol=1e-14)
    np.testing.assert_allclose(c.dims.scale_test.pvalue_adjusted, holm[3:], rtol=1e-14)


# ---------------------------------------------------------------------------------------
# Saved reports, different inputs, errors
# ---------------------------------------------------------------------------------------


def test_saved_report_compares_against_raw_latents(tmp_path, latents_file):
    rng = np.random.default_rng(13)
    a = rng.standard_normal((4000, 4))
    b = rng.standard_normal((4000, 4)) * [1, 1, 1.3, 1] + [0, 0.2, 0, 0]
    saved = tmp_path / "old.json"
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        saved.write_text(lc.analyze(a, **FAST).to_json())
    new = latents_file(b.astype(np.float32))
    cmp = fast_compare(saved, new)
    assert cmp.baseline.origin == "saved report" and cmp.baseline.rows_at_hand == 0
    c = cmp.comparisons[0]
    assert c.test == "moments" and c.moved_dims == (1, 2)
    assert c.dims.ks.reason == "the rows of A are not at hand (a saved report)"
    assert c.joint.reason and "not at hand" in c.joint.reason
    data = validate(cmp)
    dim = data["comparisons"][0]["dims"][2]
    assert dim["ks"]["pvalue"] is None and dim["std_test"]["pvalue_adjusted"] < 1e-10
    assert data["comparisons"][0]["dims"][0]["moved"] is False


def test_report_object_and_dict_inputs():
    a = np.random.default_rng(14).standard_normal((2000, 3))
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        rep = lc.analyze(a, **FAST)
    cmp = fast_compare(rep, rep.to_dict(), a)
    assert [c.input.origin for c in cmp.comparisons] == ["report", "latents"]
    assert all(not c.changed for c in cmp.comparisons)


def test_future_schema_version_is_refused(tmp_path):
    a = np.random.default_rng(15).standard_normal((500, 2))
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        data = lc.analyze(a, **FAST).to_dict()
    data["schema_version"] = 99
    with pytest.raises(SchemaError, match="schema_version 99; this latentcheck reads 1, 2"):
        lc.compare(data, a)
    with pytest.raises(SchemaError, match="The dict: The report has schema_version 99"):
        lc.compare(a, data)
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"future\.json: The report has schema_version 99"):
        lc.compare(path, a)


def test_a_saved_comparison_is_not_a_report(tmp_path):
    a = np.random.default_rng(22).standard_normal((400, 2))
    data = fast_compare(a, a, n_permutations=0).to_dict()
    with pytest.raises(SchemaError, match="The dict holds a saved comparison"):
        lc.compare(data, a)
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"cmp\.json holds a saved comparison"):
        lc.compare(path, a)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(lc.FormatError, match=r"bad\.json is not a JSON report"):
        lc.compare(tmp_path / "bad.json", a)


def test_constant_dimensions_compare_by_their_values():
    rng = np.random.default_rng(23)
    a, b = rng.standard_normal((600, 3)), rng.standard_normal((600, 3))
    a[:, 1] = b[:, 1] = 2.0
    with pytest.warns(lc.DegenerateDimensionWarning, match="zero or near-zero variance"):
        same = lc.compare(a, b, n_permutations=19).comparisons[0]
    assert same.moved_dims == () and same.dims.shift[1] == 0 and same.joint_dims == 2
    b[:, 1] = 3.0
    with pytest.warns(lc.DegenerateDimensionWarning, match="zero or near-zero variance"):
        moved = lc.compare(a, b, n_permutations=19).comparisons[0]
    assert moved.moved_dims == (1,) and moved.dims.shift[1] == np.inf
    assert moved.dims.ks.statistic[1] == 1.0


def test_different_numbers_of_dimensions_compare_what_is_comparable():
    rng = np.random.default_rng(16)
    a, b = rng.standard_normal((1500, 6)), rng.standard_normal((1500, 3))
    cmp = fast_compare(a, b)
    c = cmp.comparisons[0]
    assert c.dims is None and c.test is None and c.moved_dims == ()
    assert c.findings[0].status == "warn" and "has 3 dimensions, A has 6" in c.findings[0].text
    assert "different numbers of dimensions" in c.joint.reason
    assert c.profiles["kl_marginal"]["n_ranks"] == 3
    data = validate(cmp)
    assert data["comparisons"][0]["dims"] == []
    assert data["comparisons"][0]["summary_deltas"]["n_dims"]["delta"] == -3
    text = cmp.to_text()
    assert "Not compared dimension by dimension: A has 6 dimensions, B has 3" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"correction": "bonferroni"}, "`correction` must be one of holm, bh"),
        ({"alpha": 1.5}, "`alpha` must be in"),
        ({"dim_test_samples": 1}, "`dim_test_samples` must be at least 2"),
        ({"n_permutations": -1}, "`n_permutations` must be at least 0"),
        ({"min_shift": -0.1}, "`min_shift` must be a finite number >= 0"),
    ],
)
def test_bad_parameters(kwargs, message):
    a = np.zeros((10, 2))
    with pytest.raises(InputError, match=message):
        lc.compare(a, a, **kwargs)


def test_fewer_than_two_inputs():
    with pytest.raises(InputError, match="`compare` needs at least 2 inputs, got 1"):
        lc.compare(np.zeros((10, 2)))


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def test_json_contract_and_schema_with_posteriors(latents_file):
    rng = np.random.default_rng(17)
    mu = rng.standard_normal((1500, 4)).astype(np.float32)
    logvar = np.full((1500, 4), -1.0, dtype=np.float32)
    a = latents_file(mu=mu, logvar=logvar)
    b = latents_file(mu=mu * [1, 1, 1, 2], logvar=logvar - [0, 0, 0, 1])
    cmp = lc.compare(a, b)
    data = validate(cmp)
    assert next(iter(data)) == "schema_version" and data["schema_version"] == COMPARE_SCHEMA_VERSION
    c = data["comparisons"][0]
    assert data["baseline"]["label"] == "A" and c["input"]["label"] == "B"
    assert c["moved_dims"] == [3]
    for key in ("statistic", "pvalue", "pvalue_adjusted"):
        assert isinstance(c["dims"][3]["ks"][key], float)
    assert isinstance(c["dims"][3]["wasserstein"], float)
    assert isinstance(c["joint"]["statistic"], float) and c["joint"]["pvalue"] <= 0.01
    rate = c["summary_deltas"]["rate_nats"]
    assert rate["delta"] > 0 and c["input"]["kind"] == "posterior"
    # analytic KL of N(mu, sigma²): the mean part ½mu² quadruples, the variance part grows
    kl = lambda m, lv: 0.5 * (m**2 + np.exp(lv) - 1 - lv)  # noqa: E731
    want = kl(2.0 * mu[:, 3], -2.0).mean() - kl(mu[:, 3], -1.0).mean()
    np.testing.assert_allclose(c["dims"][3]["rate"]["delta"], want, rtol=1e-5)  # float32 input
    assert c["dims"][0]["rate"]["delta"] == 0.0
    assert "nan" not in cmp.to_json().lower()


def test_text_fits_the_width_and_has_every_section():
    rng = np.random.default_rng(18)
    inputs = [rng.standard_normal((1000, 20)) * s for s in (1.0, 1.05, 1.3, 0.7)]
    cmp = fast_compare(*inputs, n_permutations=19)
    for width in (100, 80):
        text = cmp.to_text(width=width)
        assert max(len(line) for line in text.splitlines()) <= width
    text = cmp.to_text()
    for head in ("VERDICT", "SUMMARY", "PER DIMENSION, D vs A", "SORTED PROFILES", "NOTES"):
        assert head in text
    words = " ".join(text.split())
    assert "pair dimension i of each input with dimension i of the baseline" in words
    md = cmp.to_markdown()
    assert "| figure | A | B | C | D |" in md and "**Per dimension, B vs A**" in md
    assert "| values with \\|z\\| > 3 |" in md  # pipes inside cells are escaped


def test_render_dispatch_uses_the_comparison_methods():
    from latentcheck.render import render

    a = np.random.default_rng(19).standard_normal((800, 2))
    cmp = fast_compare(a, a + 1.0, n_permutations=9)
    assert json.loads(render(cmp, "json"))["comparisons"][0]["moved_dims"] == [0, 1]
    assert render(cmp, "text").startswith("latentcheck")


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


@pytest.fixture
def pair(latents_file):
    rng = np.random.default_rng(20)
    a = rng.standard_normal((1200, 3)).astype(np.float32)
    b = (rng.standard_normal((1200, 3)) * [1, 1, 1.5]).astype(np.float32)
    return latents_file(a, name="a.npy"), latents_file(b, name="b.npy")


def test_cli_json_equals_the_api(runner, pair):
    args = ["compare", *map(str, pair), "--format", "json", "--seed", "2", "--max-joint-dims", "1"]
    res = runner.invoke(cli, [*args, "--n-permutations", "49", "--min-shift", "0.1"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    got = json.loads(res.stdout)
    want = json.loads(
        fast_compare(*map(str, pair), seed=2, n_permutations=49, min_shift=0.1).to_json()
    )
    for d in (got, want):
        d.pop("created_at")
    assert got == want
    assert got["settings"]["test_samples"] == 20_000  # compare's default, not report's
    assert got["settings"]["thresholds"]["shift"] == 0.1


def test_cli_exit_codes_and_fail_on(runner, pair, tmp_path):
    a, b = map(str, pair)
    fast = ["--max-joint-dims", "1"]
    gate = "count(comparisons.*.moved_dims.*) > 0"
    res = runner.invoke(cli, ["compare", a, b, *fast, "--fail-on", gate])
    assert res.exit_code == 1
    assert "PER DIMENSION" in res.stdout
    assert f"--fail-on condition holds: {gate}" in res.stderr
    res = runner.invoke(cli, ["compare", a, a, *fast, "--fail-on", gate])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(
        cli, ["compare", a, b, *fast, "--dim-test-samples", "500", "--format", "json"]
    )
    assert json.loads(res.stdout)["comparisons"][0]["test_rows"] == [500, 500]
    res = runner.invoke(cli, ["compare", a])
    assert res.exit_code == 2 and "at least two inputs" in res.stderr and res.stdout == ""
    res = runner.invoke(cli, ["compare", a, b, *fast, "--fail-on", "comparisons.0.nope > 1"])
    assert res.exit_code == 2 and "no key 'nope'" in res.stderr and res.stdout == ""
    future = tmp_path / "r.json"
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        data = lc.analyze(a, **FAST).to_dict()
    data["schema_version"] = 7
    future.write_text(json.dumps(data))
    res = runner.invoke(cli, ["compare", str(future), b])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip().endswith("this latentcheck reads 1, 2")
    assert len(res.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------
# Calibration (slow)
# ---------------------------------------------------------------------------------------


def _band(rate: float, alpha: float, repeats: int) -> float:
    """Upper end of a 3-sigma binomial band around alpha."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / repeats)


@pytest.mark.slow
def test_false_positive_rate_of_the_dimension_flags_is_at_most_alpha():
    alpha, repeats, d = 0.05, 300, 8
    by_test = moved = 0
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        for r in range(repeats):
            rng = np.random.default_rng(1000 + r)
            a, b = rng.standard_normal((1000, d)), rng.standard_normal((1000, d))
            c = lc.compare(a, b, seed=r, n_permutations=0, **FAST).comparisons[0]
            by_test += bool(c.dims.flagged_by_test.any())
            moved += bool(c.moved_dims)
    # Holm keeps P(any dimension rejected) <= alpha; exact KS p-values are discrete, so a
    # little below alpha; a binomial band over 300 seeded repeats
    assert 0.015 <= by_test / repeats <= _band(by_test / repeats, alpha, repeats)
    assert moved <= by_test


@pytest.mark.slow
def test_false_positive_rate_of_the_moment_tests_is_at_most_alpha():
    alpha, repeats, d = 0.05, 300, 6
    flagged = 0
    with pytest.warns(LatentcheckWarning, match=SKIPPED):
        for r in range(repeats):
            rng = np.random.default_rng(5000 + r)
            a = lc.analyze(rng.standard_normal((2000, d)), **FAST)
            b = lc.analyze(rng.standard_normal((2000, d)), **FAST)
            c = lc.compare(a, b, alpha=alpha).comparisons[0]
            assert c.test == "moments"
            flagged += bool(c.dims.flagged_by_test.any())
    assert flagged / repeats <= _band(flagged / repeats, alpha, repeats)


@pytest.mark.slow
def test_joint_energy_test_is_calibrated_under_the_null():
    repeats, rejected = 400, 0
    for r in range(repeats):
        rng = np.random.default_rng(9000 + r)
        x, y = rng.standard_t(5, (80, 4)), rng.standard_t(5, (70, 4))
        rejected += energy_two_sample(x, y, n_permutations=99, seed=r).pvalue <= 0.05
    # a permutation test is exact: rejection rate 0.05 up to binomial noise (sd 0.011)
    assert 0.05 - 0.035 <= rejected / repeats <= 0.05 + 0.035


# issue 15, item 13: a per-dimension scale test beside KS


def test_issue_15_scale_test_matches_scipy_levene() -> None:
    from latentcheck.stats.twosample import scale_columns

    rng = np.random.default_rng(15_130)
    x, y = rng.standard_t(5, size=(301, 4)), 1.1 * rng.lognormal(size=(257, 4))
    w, p, _ = scale_columns(x, y)
    for j in range(4):
        ref = ss.levene(x[:, j], y[:, j], center="median")
        np.testing.assert_allclose([w[j], p[j]], [ref.statistic, ref.pvalue], rtol=1e-10)


@pytest.mark.parametrize("n", [50, 1000])
def test_issue_15_scale_test_size_holds_on_non_gaussian_nulls(n: int) -> None:
    # 3000 independent columns per shape: the rejection rate at alpha = .05 has a binomial
    # sd of 0.004; measured .044-.055 at n = 1000 (normal, t(5), lognormal)
    from latentcheck.stats.twosample import scale_columns

    rng = np.random.default_rng(15_131 + n)
    m = 3000
    sd = math.sqrt(0.05 * 0.95 / m)
    for draw in (
        lambda: rng.standard_normal((n, m)),
        lambda: rng.standard_t(5, size=(n, m)),
        lambda: rng.lognormal(size=(n, m)),
    ):
        _, p, _ = scale_columns(draw(), draw())
        assert abs(np.mean(p < 0.05) - 0.05) < 4 * sd + 0.005


def test_issue_15_compare_finds_a_five_percent_rescale_of_one_dimension() -> None:
    # 20 000 rows per side (the default test_samples): KS alone found the rescale in 15 of
    # 40 seeded draws, KS + Brown-Forsythe (Holm over both) in 40 of 40
    rng = np.random.default_rng(15_132)
    a, b = rng.standard_normal((20_000, 8)), rng.standard_normal((20_000, 8))
    b[:, 3] *= 1.05
    cmp = fast_compare(a, b, n_permutations=0, min_log_std_ratio=0.04)
    c = cmp.comparisons[0]
    assert c.dims is not None and c.dims.scale_test is not None
    assert c.dims.scale_test.pvalue_adjusted[3] < 1e-4
    assert c.dims.ks.pvalue_adjusted[3] > 0.05  # KS alone misses it at this seed
    assert np.flatnonzero(c.dims.flagged_by_test).tolist() == [3]
    assert c.moved_dims == (3,)
    data = validate(cmp)
    rec = data["comparisons"][0]["dims"][3]
    assert rec["scale_test"]["pvalue_adjusted"] < 1e-4
    assert "Brown-Forsythe" in data["comparisons"][0]["dim_tests"]["scale_test"]["method"]


def _issue_15_fields(seed: int, items: int = 16, grid: int = 24) -> np.ndarray:
    """Exact-N(0, 1) smoothed fields (kernel sd 1.5 px), independent across items."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    white = rng.standard_normal((items, 4, grid, grid))
    f = ndimage.gaussian_filter(white, sigma=(0, 0, 1.5, 1.5), mode="wrap")
    impulse = np.zeros((grid, grid))
    impulse[0, 0] = 1.0
    norm = math.sqrt(float(np.sum(ndimage.gaussian_filter(impulse, 1.5, mode="wrap") ** 2)))
    return f / norm


@pytest.mark.slow
# the reports' tests on well-separated positions have few rows at this grid size
@pytest.mark.filterwarnings("ignore::latentcheck.errors.SmallSampleWarning")
def test_issue_15_scale_test_is_calibrated_on_conv_latents() -> None:
    # positions are correlated (lag-1 ρ ≈ 0.9): without the design effect the scale test
    # rejected 62 % of null dimensions; with it 5 % (10 pairs, 24 items of 4 x 32 x 32;
    # here 5 pairs of 16 items of 4 x 24 x 24)
    rejected, trials = 0, 0
    for r in range(5):
        a, b = _issue_15_fields(15_300 + r), _issue_15_fields(15_400 + r)
        c = lc.compare(a, b, n_permutations=0).comparisons[0]
        assert c.dims is not None and c.dims.scale_test is not None
        rejected += int(np.sum(c.dims.scale_test.pvalue < 0.05))
        trials += 4
    # Binomial(20, 0.05): P(X >= 5) = 0.003
    assert rejected <= 4, rejected
    # ... and it still sees a 25 % rescale of one channel
    a, b = _issue_15_fields(15_500), _issue_15_fields(15_501)
    b[:, 2] *= 1.25
    c = lc.compare(a, b, n_permutations=0).comparisons[0]
    assert c.dims is not None and c.dims.scale_test is not None
    assert c.dims.scale_test.pvalue[2] < 1e-3
    assert "design effect" in c.dims.scale_test.method
