"""analyze() end to end against one-shot numpy / scipy / statsmodels on the same rows."""

from __future__ import annotations

import gc
import math
import warnings

import numpy as np
import pytest
import scipy.stats as st
from statsmodels.stats.diagnostic import lilliefors, normal_ad
from statsmodels.stats.multitest import multipletests

import latentcheck as lc
from latentcheck.analysis.api import sorted_quantiles
from latentcheck.errors import DegenerateDimensionWarning, InputError, SampleQualityWarning

LEVELS = [0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999]


def _mixed(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Latents with the shapes autoencoders produce: scaled, shifted, heavy, skewed, mixed."""
    x = np.column_stack(
        [
            rng.standard_normal(n),
            3.0 * rng.standard_normal(n) + 1.0,
            st.t.rvs(4, size=n, random_state=rng),
            rng.lognormal(0, 0.5, n),
            np.where(rng.random(n) < 0.5, -1.5, 1.5) + 0.5 * rng.standard_normal(n),
            rng.uniform(-2, 2, n),
        ]
    )
    x[:, 5] += 0.3 * x[:, 0]  # some correlation
    return x


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return _mixed(np.random.default_rng(7))


@pytest.fixture(scope="module")
def report(data: np.ndarray) -> lc.Report:
    return lc.analyze(data, seed=0, test_samples=5000)


def test_descriptive_statistics_match_numpy_and_scipy(data, report):
    dm = report.dims
    # rtol 1e-12 / 1e-10: streaming float64 with pairwise merges, a few ulps per merge
    np.testing.assert_allclose(dm.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(dm.std, data.std(0), rtol=1e-10)
    np.testing.assert_array_equal(dm.min, data.min(0))
    np.testing.assert_array_equal(dm.max, data.max(0))
    np.testing.assert_allclose(dm.skewness, st.skew(data, axis=0), rtol=1e-9)
    np.testing.assert_allclose(dm.excess_kurtosis, st.kurtosis(data, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(dm.count, [data.shape[0]] * data.shape[1])
    assert report.settings.quantiles_exact
    # the sample holds every row, so the quantiles are numpy's to the last bit
    np.testing.assert_array_equal(dm.quantiles, np.quantile(data, LEVELS, axis=0))


def test_sorted_quantiles_equal_numpy_bit_for_bit(rng):
    for n in (2, 3, 10, 999, 1000):
        x = rng.standard_normal((n, 3))
        np.testing.assert_array_equal(
            sorted_quantiles(np.sort(x, axis=0), LEVELS), np.quantile(x, LEVELS, axis=0)
        )


def test_kl_gauss_is_the_closed_form(data, report):
    m, s = data.mean(0), data.std(0)
    np.testing.assert_allclose(
        report.dims.kl_gauss, 0.5 * (m**2 + s**2 - 1 - np.log(s**2)), rtol=1e-10
    )
    np.testing.assert_allclose(
        report.dims.kl_marginal, report.dims.kl_gauss + report.dims.negentropy, rtol=1e-14
    )


def test_outlier_rates_match_naive_counts(data, report):
    m, s = data.mean(0), data.std(0)
    for i, k in enumerate(report.settings.sigma_levels):
        naive = ((data > m + k * s) | (data < m - k * s)).mean(0)
        np.testing.assert_allclose(report.dims.outlier_rate[i], naive, rtol=1e-12)
        np.testing.assert_allclose(
            report.dims.prior_outlier_rate[i], (np.abs(data) > k).mean(0), rtol=1e-12
        )
        key = str(int(k))
        assert report.summary.outlier_rate[key] == pytest.approx(naive.mean(), rel=1e-12)
        assert report.summary.expected_outlier_rate[key] == pytest.approx(
            2 * st.norm.sf(k), rel=1e-12
        )


def test_univariate_tests_match_reference_implementations(data, report):
    tests = report.dims.tests
    # the tests ran on every row (n <= test_samples), in a shuffled order; every test is
    # invariant to the order, so only summation order can differ: rtol 1e-9
    for j in range(data.shape[1]):
        x = data[:, j]
        ref = {
            "shapiro": st.shapiro(x),
            "dagostino": st.normaltest(x),
            "jarque_bera": st.jarque_bera(x),
            "lilliefors": lilliefors(x, dist="norm", pvalmethod="approx"),
            "ks_prior": st.kstest(x, "norm"),
        }
        for name, r in ref.items():
            np.testing.assert_allclose(tests[name].statistic[j], r[0], rtol=1e-9, err_msg=name)
            np.testing.assert_allclose(
                tests[name].pvalue[j], r[1], rtol=1e-9, atol=1e-300, err_msg=name
            )
    for name, t in tests.items():
        np.testing.assert_allclose(
            t.pvalue_holm, multipletests(t.pvalue, method="holm")[1], rtol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("n", [1, 2, 7, 500, 5000])
def test_ks_prior_is_scipy_kstest(n):
    # D to the last bit; the p-value too where scipy's own function gives it, and within
    # 5e-15 (1 + |ln p|) where its one-sided sum is evaluated vectorised (issue 22; see
    # tests/test_issue_22_kolmogorov.py)
    from latentcheck.stats.normality import ks_prior

    rng = np.random.default_rng(n)
    x = np.column_stack(
        [
            rng.standard_normal(n),
            0.5 * rng.standard_normal(n),  # off scale: tiny p-values
            rng.standard_normal(n) + 0.3,
            rng.standard_t(2, n) * 4.0,  # far outliers
            np.round(rng.standard_normal(n), 1),  # ties
        ]
    )
    d, p = ks_prior(x)
    for j in range(x.shape[1]):
        ref = st.kstest(x[:, j], "norm")
        assert d[j] == ref.statistic, (n, j)
        rtol = 5e-15 * (1 - math.log(ref.pvalue)) if ref.pvalue > 1e-300 else 0.0
        assert abs(p[j] - ref.pvalue) <= rtol * ref.pvalue + 1e-300, (n, j, p[j], ref)


@pytest.mark.parametrize("shape", [(20_000, 1), (5000, 1, 2, 2)])
def test_one_dimension_tests_a_uniform_sample_not_the_smallest_values(shape):
    # with one dimension the transposed sample was a view of it, and sorting the columns
    # for the quantiles sorted the sample's rows: the univariate tests then ran on the
    # test_samples smallest values. They must run on the rows with the smallest keys.
    from latentcheck.engine.accumulators import hash_rows

    x = np.random.default_rng(3).standard_normal(shape)
    rows = np.moveaxis(x, 1, -1).reshape(-1) if x.ndim > 2 else x[:, 0]
    rep = lc.analyze(x, test_samples=500, seed=0)
    first = np.argsort(hash_rows(np.arange(rows.size), rep.settings.seed), kind="stable")[:500]
    ref = st.shapiro(rows[first])
    sw = rep.dims.tests["shapiro"]
    np.testing.assert_allclose(sw.statistic[0], ref.statistic, rtol=1e-9)
    np.testing.assert_allclose(sw.pvalue[0], ref.pvalue, rtol=1e-9)


def _scipy_anderson(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scipy 1.17 asks for `method`
        return float(st.anderson(x).statistic)


def test_anderson_statistic_equals_scipy_and_pvalue_statsmodels(data, report):
    ad = report.dims.tests["anderson"]
    for j in range(data.shape[1]):
        np.testing.assert_allclose(ad.statistic[j], _scipy_anderson(data[:, j]), rtol=1e-9)
        a2, p = normal_ad(data[:, j])  # the scalar path of statsmodels applies the same table
        if np.isfinite(a2) and a2 < 9:
            np.testing.assert_allclose(ad.statistic[j], a2, rtol=1e-9)
            np.testing.assert_allclose(ad.pvalue[j], p, rtol=1e-9)


def test_anderson_is_finite_for_far_outliers_where_statsmodels_is_not(rng):
    from latentcheck.stats.normality import anderson_pvalue, anderson_statistic

    x = rng.standard_normal(400)
    x[0] = 60.0  # beyond 8 sd after standardising: log(1 - Phi) underflows in statsmodels
    a2 = anderson_statistic(x[:, None])[0]
    assert np.isfinite(a2)
    np.testing.assert_allclose(a2, _scipy_anderson(x), rtol=1e-9)
    assert anderson_pvalue(np.array([a2]), 400)[0] == 3.7e-24


@pytest.mark.parametrize(
    "a2, n, expected",
    [
        # R: nortest:::ad.test formula by hand, AA = A2 * (1 + 0.75/n + 2.25/n^2)
        (0.1, 50, 1 - math.exp(-13.436 + 101.14 * 0.1 * 1.0159 - 223.73 * (0.1 * 1.0159) ** 2)),
        (0.3, 50, 1 - math.exp(-8.318 + 42.796 * 0.3 * 1.0159 - 59.938 * (0.3 * 1.0159) ** 2)),
        (0.5, 50, math.exp(0.9177 - 4.279 * 0.5 * 1.0159 - 1.38 * (0.5 * 1.0159) ** 2)),
        (2.0, 50, math.exp(1.2937 - 5.709 * 2 * 1.0159 + 0.0186 * (2 * 1.0159) ** 2)),
        (12.0, 50, 3.7e-24),
    ],
)
def test_anderson_pvalue_formula(a2, n, expected):
    from latentcheck.stats.normality import anderson_pvalue

    np.testing.assert_allclose(anderson_pvalue(np.array([a2]), n)[0], expected, rtol=1e-12)


def test_joint_statistics_match_numpy(data, report):
    jt = report.joint
    cov = np.cov(data, rowvar=False, bias=True)
    eig = np.linalg.eigvalsh(cov)[::-1]
    np.testing.assert_allclose(jt.eigenvalues, eig, rtol=1e-10)
    np.testing.assert_allclose(jt.effective_dims, eig.sum() ** 2 / (eig**2).sum(), rtol=1e-10)
    np.testing.assert_allclose(jt.condition_number, np.linalg.cond(cov), rtol=1e-8)
    corr = np.corrcoef(data, rowvar=False)
    np.testing.assert_allclose(jt.total_correlation, -0.5 * np.linalg.slogdet(corr)[1], rtol=1e-9)
    m = data.mean(0)
    kl = 0.5 * (m @ m + np.trace(cov) - cov.shape[0] - np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(jt.kl_gauss, kl, rtol=1e-10)
    # the decomposition is exact
    np.testing.assert_allclose(
        jt.kl_gauss, report.summary.kl_gauss_sum + jt.total_correlation, rtol=1e-12
    )
    i, j, r = jt.top_pairs[0]
    assert {i, j} == {0, 5}
    np.testing.assert_allclose(r, corr[0, 5], rtol=1e-10)


def test_normalization_constants(data, report):
    nz = report.summary.normalization
    np.testing.assert_allclose(nz.shift, data.mean(), rtol=1e-12)
    np.testing.assert_allclose(nz.scale, 1 / data.std(), rtol=1e-10)
    np.testing.assert_allclose(nz.scale_rms, 1 / np.sqrt((data**2).mean()), rtol=1e-10)
    np.testing.assert_allclose(nz.per_dim_shift, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(nz.per_dim_scale, 1 / data.std(0), rtol=1e-10)
    assert nz.shift_ci[0] < nz.shift < nz.shift_ci[1]
    assert np.all(nz.per_dim_scale_ci[:, 0] < nz.per_dim_scale)
    assert np.all(nz.per_dim_scale < nz.per_dim_scale_ci[:, 1])
    # exact standard error of the global mean from the covariance: 1ᵀS1 / (n d²)
    n, d = data.shape
    se = math.sqrt(np.cov(data, rowvar=False, bias=True).sum() / (n * d * d))
    np.testing.assert_allclose(nz.shift_ci[1] - nz.shift, 1.959963984540054 * se, rtol=1e-9)


def _leaves(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in ("created_at", "chunk_rows", "threads"):
                yield from _leaves(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def _assert_same_report(a: dict, b: dict, rtol: float) -> None:
    la, lb = dict(_leaves(a)), dict(_leaves(b))
    assert la.keys() == lb.keys()
    for k, va in la.items():
        vb = lb[k]
        if isinstance(va, float) and isinstance(vb, float):
            assert va == pytest.approx(vb, rel=rtol, abs=1e-12), k
        else:
            assert va == vb, k


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_report_does_not_depend_on_chunk_size_or_threads(chunk_rows):
    data = _mixed(np.random.default_rng(3), n=1500)
    whole = lc.analyze(data, seed=1, chunk_rows=1500, threads=1).to_dict()
    other = lc.analyze(data, seed=1, chunk_rows=chunk_rows, threads=2).to_dict()
    # to 1e-10 relative (abs 1e-12 for values that are 0 up to rounding)
    _assert_same_report(whole, other, rtol=1e-10)


def test_sample_is_used_when_data_exceeds_it(rng):
    data = rng.standard_normal((4000, 3))
    rep = lc.analyze(data, seed=5, sample_size=1000, test_samples=500)
    assert rep.settings.sample_rows == 1000 and not rep.settings.quantiles_exact
    assert any("sample of 1000 of 4000 rows" in note for note in rep.input.notes)
    # moments still come from every row
    np.testing.assert_allclose(rep.dims.mean, data.mean(0), rtol=1e-12)
    # quantiles are close, not exact (sample of 1000 rows): within 0.15 std
    np.testing.assert_allclose(rep.dims.quantiles[4], np.median(data, 0), atol=0.15)
    assert rep.dims.tests["shapiro"].statistic.shape == (3,)


def test_same_seed_same_report_other_seed_other_sample(rng):
    data = rng.standard_normal((3000, 2))
    a = lc.analyze(data, seed=11, sample_size=500, test_samples=500)
    b = lc.analyze(data, seed=11, sample_size=500, test_samples=500)
    c = lc.analyze(data, seed=12, sample_size=500, test_samples=500)
    np.testing.assert_array_equal(a.dims.quantiles, b.dims.quantiles)
    assert not np.array_equal(a.dims.quantiles, c.dims.quantiles)
    assert lc.analyze(data, seed=None, test_samples=500).settings.seed >= 0


def test_conv_layout_uses_channels_as_dimensions(rng):
    x = rng.standard_normal((20, 4, 3, 5)).astype(np.float32)
    x[:, 2] *= 2
    rep = lc.analyze(x)
    rows = np.moveaxis(x, 1, -1).reshape(-1, 4).astype(np.float64)
    assert rep.input.n_dims == 4 and rep.input.n_samples == 20 * 15
    assert "4 channels are the dimensions" in rep.input.layout
    np.testing.assert_allclose(rep.dims.std, rows.std(0), rtol=1e-10)
    np.testing.assert_array_equal(rep.dims.quantiles, np.quantile(rows, LEVELS, axis=0))
    last = lc.analyze(np.moveaxis(x, 1, -1), channel_axis=-1)
    np.testing.assert_allclose(last.dims.std, rows.std(0), rtol=1e-10)
    with pytest.warns(lc.LatentcheckWarning, match="60 dimensions exceed max_joint_dims=10"):
        flat = lc.analyze(x, flatten=True, max_joint_dims=10, allow_few_rows=True)
    assert flat.input.n_dims == 60 and flat.input.n_samples == 20
    assert flat.joint.skipped is not None and "max_joint_dims" in flat.joint.skipped


def test_non_finite_rows_are_left_out_and_counted(rng):
    x = rng.standard_normal((500, 3))
    x[10, 1] = np.nan
    x[20, 0] = np.inf
    x[20, 2] = -np.inf
    with pytest.warns(lc.LatentcheckWarning, match="2 of 500 rows hold NaN or inf"):
        rep = lc.analyze(x)
    keep = np.isfinite(x).all(1)
    assert rep.input.non_finite_rows == 2 and rep.input.n_samples == 498
    assert rep.input.non_finite_values == (1, 1, 1)
    np.testing.assert_allclose(rep.dims.mean, x[keep].mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        rep.dims.outlier_rate[0], (np.abs(x[keep] - x[keep].mean(0)) > 3 * x[keep].std(0)).mean(0)
    )
    with pytest.raises(
        InputError,
        match=r"3 non-finite values in 2 rows \(first at row 10, "
        r"dimension 1\)",
    ):
        lc.analyze(x, nan="error")


def test_degenerate_dimension_is_named_and_left_out(rng):
    x = rng.standard_normal((400, 3))
    x[:, 1] = 2.5
    with pytest.warns(DegenerateDimensionWarning, match="near-zero variance.*: 1;"):
        rep = lc.analyze(x)
    assert rep.joint.dims_excluded == ((1, "zero or near-zero variance"),)
    assert rep.joint.n_dims_used == 2
    assert np.isnan(rep.dims.tests["shapiro"].pvalue[1])
    assert rep.dims.tests["shapiro"].reason[1] == "constant in the test sample"
    assert math.isfinite(rep.joint.total_correlation)
    assert any("near-zero variance" in w for w in rep.warnings)


def test_more_dims_than_rows_skips_joint_with_reason(rng):
    x = rng.standard_normal((5, 8))
    with pytest.raises(lc.InputError, match=r"fewer rows \(samples\) than dimensions \(5 < 8\)"):
        lc.analyze(x)  # issue 16: refused unless the user insists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lc.SmallSampleWarning)
        with pytest.warns(lc.LatentcheckWarning, match="d >= N"):
            rep = lc.analyze(x, allow_few_rows=True)
    assert "only 5 rows" in rep.joint.skipped
    assert math.isnan(rep.joint.total_correlation)


def test_integer_input_is_upcast_with_a_note(rng):
    x = rng.integers(-3, 4, size=(300, 2)).astype(np.int16)
    with (
        pytest.warns(SampleQualityWarning, match="repeat an earlier row|2 dimension"),
        pytest.warns(DegenerateDimensionWarning, match="coarsely quantised"),
    ):
        rep = lc.analyze(x)
    assert rep.summary.sample_checks is not None
    assert rep.summary.sample_checks["smallest_gap"] == [1.0, 1.0]
    assert any("int16 values were converted to float64" in n for n in rep.input.notes)
    np.testing.assert_allclose(rep.dims.mean, x.mean(0), rtol=1e-12)


def test_gaussian_data_verdict_and_tail_ratios():
    x = np.random.default_rng(0).standard_normal((20000, 4))
    rep = lc.analyze(x)
    status = {f.aspect: f.status for f in rep.summary.findings}
    assert status["scale"] == "ok" and status["gaussianity"] == "ok"
    assert rep.summary.kl_marginal_sum < 0.01
    heavy = lc.analyze(st.t.rvs(3, size=(20000, 4), random_state=1))
    statuses = {f.aspect: f.status for f in heavy.summary.findings}
    assert statuses["outliers"] == "warn" and statuses["gaussianity"] == "warn"
    assert heavy.summary.outlier_ratio["4"] > 5


def test_holm_matches_statsmodels_and_skips_nan(rng):
    from latentcheck.stats.normality import holm

    p = rng.uniform(0, 0.2, 50) ** 3
    p[[3, 17]] = np.nan
    ok = np.isfinite(p)
    out = holm(p)
    # same arithmetic as statsmodels (sorted products, running max, clip): rtol 1e-15
    np.testing.assert_allclose(out[ok], multipletests(p[ok], method="holm")[1], rtol=1e-15)
    assert np.isnan(out[[3, 17]]).all()
    assert np.isnan(holm(np.array([np.nan]))).all()


def test_histogram_of_standardised_sample_matches_numpy(data, report):
    from latentcheck.model.report import HISTOGRAM_EDGES

    edges = np.concatenate([[-np.inf], HISTOGRAM_EDGES, [np.inf]])
    for j in range(data.shape[1]):
        z = (data[:, j] - data[:, j].mean()) / data[:, j].std()
        np.testing.assert_array_equal(report.dims.histogram[j], np.histogram(z, bins=edges)[0])
    assert report.to_dict()["dims"][0]["histogram"] == report.dims.histogram[0].tolist()


def test_histogram_of_a_float32_sample_counts_as_float64_would(rng):
    # the cuts are moved into float32 exactly: values equal to a cut, and values between
    # the float64 cut and its float32 rounding, land in the bins a float64 count gives
    from latentcheck.analysis.finish import histograms  # tests the internals
    from latentcheck.model.report import HISTOGRAM_EDGES

    edges = np.asarray(HISTOGRAM_EDGES)
    mean, std = np.array([0.1, -0.3]), np.array([1.0 / 3.0, 2.0])
    cuts = mean[:, None] + edges[None, :] * std[:, None]
    near = np.concatenate([cuts, np.nextafter(cuts.astype(np.float32), np.inf)], axis=1)
    x = np.concatenate(
        [near.T.astype(np.float32), rng.standard_normal((500, 2)).astype(np.float32)]
    )
    x = np.sort(x, axis=0)
    got = histograms(x, mean, std, np.zeros(2, dtype=bool))
    for j in range(2):
        want = np.diff(
            np.concatenate([[0], np.searchsorted(x[:, j].astype(np.float64), cuts[j]), [len(x)]])
        )
        np.testing.assert_array_equal(got[j], want)


def test_analysis_restores_gc_and_blas_threads(rng):
    # the analysis suspends the cyclic GC and limits BLAS to one thread while it runs;
    # a caller's process must get both back, also when the analysis fails
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    assert gc.isenabled()
    lc.analyze(rng.standard_normal((500, 3)))
    assert gc.isenabled()
    assert blas_threads() == before
    with pytest.raises(InputError):
        lc.analyze(np.ones((500, 3)))  # all constant: refused
    assert gc.isenabled()
    assert blas_threads() == before
    gc.disable()
    try:
        lc.analyze(rng.standard_normal((500, 3)))
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


def test_analysis_gathers_its_sample_in_key_order_on_first_use():
    from latentcheck.analysis.api import analyze_with_sample
    from latentcheck.engine.accumulators import hash_rows

    x = np.random.default_rng(5).standard_normal((3000, 3))
    a = analyze_with_sample(x, sample_size=500, test_samples=200)
    assert repr(a) == "<Analysis: report on 3000 rows x 3 dims, sample of 500 rows>"
    first = np.argsort(hash_rows(np.arange(3000), a.report.settings.seed), kind="stable")[:500]
    np.testing.assert_array_equal(a.row_ids, first)
    np.testing.assert_array_equal(a.sample, x[first])
