"""Tests of latentcheck.stats.multivariate against published values and literal formulas."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, linalg, spatial, stats

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.model.report import TestResult

# energy_distance and normality: their private helpers are checked directly
from latentcheck.stats.joint import energy_distance, normality
from latentcheck.stats.joint import multivariate as mv
from latentcheck.stats.joint.common import symmetric_pair_sum
from latentcheck.stats.joint.mardia import (
    MardiaAccumulator,
    _mardia_kurtosis,
    b1p_from_third,
    cube,
    third_order_sums,
)

DATA = Path(__file__).parent / "data"


def iris(n_cols: int) -> np.ndarray:
    # The 50 Iris setosa rows of R's datasets::iris (see tests/data/README.md).
    return np.loadtxt(DATA / "iris_setosa.csv", delimiter=",", skiprows=1)[:, :n_cols]


def pingouin_data() -> np.ndarray:
    # pingouin's datasets/multivariate.csv, columns Fever, Pressure, Aches.
    return np.loadtxt(
        DATA / "pingouin_multivariate.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3)
    )


def assert_published(value: float, published: str) -> None:
    """Check value against a published figure to the digits printed (half a last unit).

    R prints 15 significant digits of its own float64 result; another summation order
    moves the 15th digit (the kurtosis z subtracts d(d+2) from b2p), so figures that long
    get 1e-13 relative slack, i.e. 14 matching digits.
    """
    exponent = Decimal(published).as_tuple().exponent
    assert isinstance(exponent, int)
    atol = 0.5 * 10.0**exponent + 1e-13 * abs(float(published))
    assert abs(value - float(published)) <= atol, (value, published)


# -- published reference values ---------------------------------------------------------

# MVN 5.9 vignette (4 columns) and MVN tutorial values (3, 2 columns), from
# tests/data/README.md; R: MVN::mvn(iris[1:50, 1:k], mvnTest = ...).
IRIS_MVN = {
    4: {
        "mardia": (
            "25.6643445196298",
            "0.177185884467652",
            "1.29499223711605",
            "0.195322907441935",
        ),
        "hz": ("0.9488453", "0.04995356"),
        "royston": ("31.51803", "2.187653e-06"),
        "energy": "1.203397",
    },
    3: {
        "mardia": ("11.249", "0.338", "1.287", "0.198"),
        "hz": ("0.524", "0.831"),
        "royston": ("7.255", "0.060"),
        "energy": "0.786",
    },
    2: {
        "mardia": ("0.760", "0.944", "0.093", "0.926"),
        "hz": ("0.286", "0.915"),
        "royston": ("2.698", "0.245"),
        "energy": "0.527",
    },
}


@pytest.mark.parametrize("n_cols", [4, 3, 2])
def test_mardia_iris_matches_mvn(n_cols: int) -> None:
    # MVN standardises the kurtosis by its asymptotic moments: kurtosis="asymptotic"
    skew, kurt = mv.mardia(iris(n_cols), kurtosis="asymptotic")
    s, sp, k, kp = IRIS_MVN[n_cols]["mardia"]
    assert_published(skew.statistic, s)
    assert_published(skew.pvalue, sp)
    assert_published(kurt.statistic, k)
    assert_published(kurt.pvalue, kp)
    assert skew.df == n_cols * (n_cols + 1) * (n_cols + 2) / 6


@pytest.mark.parametrize("n_cols", [4, 3, 2])
def test_henze_zirkler_iris_matches_mvn(n_cols: int) -> None:
    res = mv.henze_zirkler(iris(n_cols))
    stat, p = IRIS_MVN[n_cols]["hz"]
    assert_published(res.statistic, stat)
    assert_published(res.pvalue, p)


@pytest.mark.parametrize("n_cols", [4, 3, 2])
def test_royston_iris_matches_mvn(n_cols: int) -> None:
    # MVN's kurtosis switch to Shapiro-Francia through the Shapiro-Wilk transform
    res = mv.royston(iris(n_cols), columns="mvn")
    stat, p = IRIS_MVN[n_cols]["royston"]
    assert_published(res.statistic, stat)
    assert_published(res.pvalue, p)


@pytest.mark.parametrize("n_cols", [4, 3, 2])
def test_energy_iris_matches_mvn(n_cols: int) -> None:
    res = mv.energy(iris(n_cols), n_resamples=0)
    assert_published(res.statistic, IRIS_MVN[n_cols]["energy"])
    assert math.isnan(res.pvalue)


# Correctly centred Doornik-Hansen values from tests/data/README.md (MVN's published
# 126.5584 / 64.974 / 11.57 come from its recycled-mean centring and are not used).
@pytest.mark.parametrize(
    ("n_cols", "stat", "p"),
    [(4, "24.414", "0.00195"), (3, "10.817", "0.094"), (2, "5.924", "0.205")],
)
def test_doornik_hansen_iris_matches_paper_definition(n_cols: int, stat: str, p: str) -> None:
    res = mv.doornik_hansen(iris(n_cols))
    assert_published(res.statistic, stat)
    assert_published(res.pvalue, p)
    assert res.df == 2 * n_cols


@pytest.mark.parametrize(
    ("species_rows", "stat", "p"),
    [((0, 50), "0.9488453", "0.04995356")],
)
def test_henze_zirkler_iris_setosa_species_table(
    species_rows: tuple[int, int], stat: str, p: str
) -> None:
    res = mv.henze_zirkler(iris(4)[species_rows[0] : species_rows[1]])
    assert_published(res.statistic, stat)
    assert_published(res.pvalue, p)


def test_henze_zirkler_pingouin_example() -> None:
    # pingouin docs: multivariate_normality(data[['Fever', 'Pressure', 'Aches']]) gives
    # HZ 0.540086101851555, p 0.7173686509622386. pingouin sums the n x n matrix in
    # another order, so the last 2-3 of its 16 digits differ: rtol 1e-11.
    res = mv.henze_zirkler(pingouin_data())
    np.testing.assert_allclose(res.statistic, 0.540086101851555, rtol=1e-11)
    np.testing.assert_allclose(res.pvalue, 0.7173686509622386, rtol=1e-11)


# -- literal transcriptions (n x n matrices, fine for small n) -----------------------------


def literal_mardia(x: np.ndarray) -> tuple[float, float, float, float]:
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = np.cov(x, rowvar=False, bias=True).reshape(d, d)
    dmat = xc @ np.linalg.solve(s, xc.T)
    b1p = float(np.sum(dmat**3)) / n**2
    b2p = float(np.mean(np.diag(dmat) ** 2))
    df = d * (d + 1) * (d + 2) / 6
    skew = n * b1p / 6
    if n < 20:
        skew *= (d + 1) * (n + 1) * (n + 3) / (n * ((n + 1) * (d + 1) - 6))
    # Mardia (1974): exact finite-n mean and variance of b2p under normality
    e_b2p = d * (d + 2) * (n - 1) / (n + 1)
    v_b2p = (
        8 * d * (d + 2) * (n - 3) * (n - d - 1) * (n - d + 1) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    )
    kurt = (b2p - e_b2p) / math.sqrt(v_b2p)
    return skew, stats.chi2.sf(skew, df), kurt, 2 * stats.norm.sf(abs(kurt))


@pytest.mark.parametrize(
    ("n_cols", "asymptotic", "exact"), [(4, 1.29499, 2.19264), (2, 0.09346, 0.43883)]
)
def test_issue_15_mardia_exact_and_asymptotic_kurtosis_on_iris(
    n_cols: int, asymptotic: float, exact: float
) -> None:
    # MVN's published z (asymptotic centre d(d+2)) and the exact-moment z differ on iris;
    # both are checked: the first against MVN, the second against the literal formula.
    x = iris(n_cols)
    a = mv.mardia(x, kurtosis="asymptotic")[1]
    e = mv.mardia(x)[1]
    assert a.statistic == pytest.approx(asymptotic, abs=1e-5)
    assert e.statistic == pytest.approx(exact, abs=1e-5)
    np.testing.assert_allclose(e.statistic, literal_mardia(x)[2], rtol=1e-12)
    assert a.effect_size == e.effect_size  # b2p - d(d+2) either way
    assert "exact finite-n" in (e.method or "") and "asymptotic" in (a.method or "")
    with pytest.raises(InputError, match="kurtosis"):
        mv.mardia(x, kurtosis="mvn")


@pytest.mark.parametrize(("n", "d"), [(30, 4), (100, 20)])
def test_issue_15_mardia_b2p_moments_match_simulation(n: int, d: int) -> None:
    # 4000 draws: the z statistic's mean and variance are 0 and 1 within Monte-Carlo
    # error (mean: se 1/sqrt(4000) = 0.016, 5 se; variance: se ~ sqrt(2/4000) (b2p is
    # skewed, so allow 4x that)). The asymptotic centre misses by 2d(d+2)/(n+1)/sd.
    rng = np.random.default_rng(1974 + n)
    x = rng.standard_normal((4000, n, d))
    xc = x - x.mean(axis=1, keepdims=True)
    s_inv = np.linalg.inv(np.einsum("rni,rnj->rij", xc, xc) / n)
    b2p = (np.einsum("rni,rij,rnj->rn", xc, s_inv, xc) ** 2).mean(axis=1)
    z = np.array([_mardia_kurtosis(n, d, float(b)).statistic for b in b2p[:3]])
    np.testing.assert_allclose(z, [literal_kurt(n, d, b) for b in b2p[:3]], rtol=1e-12)
    zs = (b2p - d * (d + 2) * (n - 1) / (n + 1)) / math.sqrt(
        8 * d * (d + 2) * (n - 3) * (n - d - 1) * (n - d + 1) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    )
    assert abs(zs.mean()) < 5 / math.sqrt(4000)
    assert abs(zs.var() - 1.0) < 4 * math.sqrt(2 / 4000)


def literal_kurt(n: int, d: int, b2p: float) -> float:
    mean = d * (d + 2) * (n - 1) / (n + 1)
    var = 8 * d * (d + 2) * (n - 3) * (n - d - 1) * (n - d + 1) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    return (b2p - mean) / math.sqrt(var)


@pytest.mark.slow
def test_issue_15_mardia_kurtosis_size_at_n5000_d64() -> None:
    # The issue measured size .093 with the asymptotic centre; 400 draws of N(0, I_64),
    # 5000 rows each, through the streaming accumulator (as the report runs it).
    rng = np.random.default_rng(15064)
    n_draws, rejected, rejected_asym = 400, 0, 0
    for _ in range(n_draws):
        x = rng.standard_normal((5000, 64))
        acc = MardiaAccumulator(x.mean(axis=0), np.cov(x, rowvar=False, bias=True))
        acc.push(x)
        rejected += acc.results()[1].pvalue <= 0.05
        b2p = acc._sum_r4 / 5000
        rejected_asym += _mardia_kurtosis(5000, 64, b2p, exact=False).pvalue <= 0.05
    lo, hi = binomial_band(n_draws)
    assert lo <= rejected / n_draws <= hi, rejected / n_draws
    assert rejected_asym / n_draws > 0.07  # the defect: ~.09


@pytest.mark.parametrize(
    ("n", "d"),
    [(12, 2), (19, 3), (20, 3), (40, 5), (200, 3), (25, 1)],  # n < 20 correction; both paths
)
def test_mardia_matches_literal_formula(n: int, d: int) -> None:
    rng = np.random.default_rng(n * 100 + d)
    x = rng.standard_normal((n, d)) ** 3 @ rng.standard_normal((d, d)) + 5.0
    skew, kurt = mv.mardia(x)
    # Same float64 arithmetic in another order (solve vs Cholesky, n x n vs tensor sums).
    np.testing.assert_allclose(
        [skew.statistic, skew.pvalue, kurt.statistic, kurt.pvalue],
        literal_mardia(x),
        rtol=1e-10,
    )
    assert ("small-sample" in (skew.method or "")) == (n < 20)


@pytest.mark.parametrize(("n", "d"), [(300, 6), (1000, 40)])
def test_mardia_pairwise_and_tensor_sums_agree(n: int, d: int) -> None:
    # at d = 40 the tensor sums run in two row blocks (625 rows: small-matrix products)
    rng = np.random.default_rng(7)
    y = rng.standard_normal((n, d))
    pairwise = symmetric_pair_sum(y, y, cube, block_size=64)
    tensor = b1p_from_third(third_order_sums(y), d)
    literal = float(np.sum((y @ y.T) ** 3))
    # Three summation orders of the same n^2 terms: agreement to 1e-12.
    np.testing.assert_allclose([pairwise, tensor], literal, rtol=1e-12)


def literal_hz(x: np.ndarray) -> tuple[float, float]:
    n, d = x.shape
    vi = np.linalg.inv(np.cov(x, rowvar=False, bias=True).reshape(d, d))
    djk = spatial.distance.cdist(x, x, "mahalanobis", VI=vi) ** 2
    dj = spatial.distance.cdist(x, x.mean(axis=0, keepdims=True), "mahalanobis", VI=vi)[:, 0] ** 2
    b = (n * (2 * d + 1) / 4) ** (1 / (d + 4)) / math.sqrt(2)
    hz = n * (
        np.sum(np.exp(-(b**2) / 2 * djk)) / n**2
        - 2 * (1 + b**2) ** (-d / 2) * np.sum(np.exp(-(b**2) / (2 * (1 + b**2)) * dj)) / n
        + (1 + 2 * b**2) ** (-d / 2)
    )
    a = 1 + 2 * b**2
    wb = (1 + b**2) * (1 + 3 * b**2)
    mu = 1 - a ** (-d / 2) * (1 + d * b**2 / a + d * (d + 2) * b**4 / (2 * a**2))
    si2 = (
        2 * (1 + 4 * b**2) ** (-d / 2)
        + 2 * a ** (-d) * (1 + 2 * d * b**4 / a**2 + 3 * d * (d + 2) * b**8 / (4 * a**4))
        - 4 * wb ** (-d / 2) * (1 + 3 * d * b**4 / (2 * wb) + d * (d + 2) * b**8 / (2 * wb**2))
    )
    pmu = math.log(math.sqrt(mu**4 / (si2 + mu**2)))
    psi = math.sqrt(math.log((si2 + mu**2) / mu**2))
    return float(hz), float(stats.lognorm.sf(hz, s=psi, scale=math.exp(pmu)))


@pytest.mark.parametrize(("n", "d"), [(30, 2), (100, 4), (257, 6)])
@pytest.mark.parametrize("block_size", [1, 7, 256, 1000])
def test_henze_zirkler_matches_literal_formula(n: int, d: int, block_size: int) -> None:
    rng = np.random.default_rng(n + d)
    x = rng.standard_t(5, size=(n, d)) @ rng.standard_normal((d, d))
    res = mv.henze_zirkler(x, block_size=block_size)
    # cdist's exact differences vs the Gram expansion in blocks: 1e-10 relative.
    np.testing.assert_allclose([res.statistic, res.pvalue], literal_hz(x), rtol=1e-10)
    np.testing.assert_allclose(res.effect_size, res.statistic / n, rtol=1e-15)


def test_henze_zirkler_lognormal_underflow_returns_none() -> None:
    assert normality._hz_lognormal(0.5, 3000) is None
    assert normality._hz_lognormal(0.5, 4) is not None


def literal_royston(x: np.ndarray, columns: str = "shapiro_wilk") -> tuple[float, float, float]:
    n, d = x.shape
    z = np.empty(d)
    for j in range(d):
        col = x[:, j]
        if columns != "shapiro_wilk" and stats.kurtosis(col, fisher=False) > 3:
            scores = stats.norm.ppf((np.arange(1, n + 1) - 3 / 8) / (n + 1 / 4))
            w = stats.pearsonr(np.sort(col), scores)[0] ** 2
            if columns == "francia":  # Royston (1993), nortest::sf.test
                u = math.log(n)
                v = math.log(u)
                mu = -1.2725 + 1.0521 * (v - u)
                sigma = 1.0308 - 0.26758 * (v + 2 / u)
                z[j] = (math.log(1 - w) - mu) / sigma
                continue
        else:
            w = stats.shapiro(col)[0]
        if n <= 11:
            g = -2.273 + 0.459 * n
            m = 0.544 - 0.39978 * n + 0.025054 * n**2 - 0.0006714 * n**3
            s = math.exp(1.3822 - 0.77857 * n + 0.062767 * n**2 - 0.0020322 * n**3)
            z[j] = (-math.log(g - math.log(1 - w)) - m) / s
        else:
            lx = math.log(n)
            m = -1.5861 - 0.31082 * lx - 0.083751 * lx**2 + 0.0038915 * lx**3
            s = math.exp(-0.4803 - 0.082676 * lx + 0.0030302 * lx**2)
            z[j] = (math.log(1 - w) - m) / s
    c = np.corrcoef(x, rowvar=False)
    lx = math.log(n)
    v = 0.21364 + 0.015124 * lx**2 - 0.0018034 * lx**3
    nc = c**5 * (1 - 0.715 * (1 - c) ** 0.715 / v)
    e = d / (1 + (d - 1) * (np.sum(nc) - d) / (d * d - d))
    h = e * np.sum(stats.norm.ppf(stats.norm.cdf(-z) / 2) ** 2) / d
    return h, stats.chi2.sf(h, e), e


@pytest.mark.parametrize("columns", ["shapiro_wilk", "mvn", "francia"])
@pytest.mark.parametrize(("n", "d"), [(8, 2), (11, 3), (12, 3), (60, 4), (500, 3)])
def test_royston_matches_literal_formula(n: int, d: int, columns: str) -> None:
    rng = np.random.default_rng(3 * n + d)
    x = rng.laplace(size=(n, d)) @ rng.standard_normal((d, d))
    x[:, 0] = rng.uniform(size=n)  # kurtosis < 3: Shapiro-Wilk branch
    res = mv.royston(x, columns=columns)
    # Same formulas with scipy.stats building blocks: 1e-10 relative.
    np.testing.assert_allclose(
        [res.statistic, res.pvalue, res.df], literal_royston(x, columns), rtol=1e-10
    )


def test_issue_15_royston_francia_transform_is_standard_normal_under_h0() -> None:
    # Royston's (1993) transform of Shapiro-Francia's W' is N(0, 1) under normality when
    # applied to every column (no selection): 3000 columns of 200 rows, mean within 5 se.
    rng = np.random.default_rng(1993)
    x = rng.standard_normal((3000, 200))
    z = np.array([mv.royston(c[:, None], columns="francia").statistic for c in x[:5]])
    assert np.all(np.isfinite(z))
    w = np.array([normality._shapiro_francia(c) for c in x])
    u = math.log(200)
    v = math.log(u)
    zs = (np.log1p(-w) - (-1.2725 + 1.0521 * (v - u))) / (1.0308 - 0.26758 * (v + 2 / u))
    assert abs(zs.mean()) < 5 / math.sqrt(3000)
    assert abs(zs.std() - 1) < 0.06
    # The kurtosis switch selects columns whose z is already high: mean z of the
    # selected columns is far above 0 (the cause of the switch's over-rejection).
    xc = x - x.mean(axis=1, keepdims=True)
    high = (xc**4).mean(axis=1) / (xc**2).mean(axis=1) ** 2 > 3
    assert zs[high].mean() > 0.3


@pytest.mark.parametrize(
    ("n_cols", "columns", "stat"), [(4, "mvn", 31.51803), (3, "mvn", 7.255), (2, "mvn", 2.698)]
)
def test_issue_15_royston_default_and_mvn_on_iris(n_cols: int, columns: str, stat: float) -> None:
    # MVN's published H reproduces with columns="mvn"; the default (Shapiro-Wilk for every
    # column) equals the literal scipy-based formula, and differs where a column's
    # kurtosis exceeds 3 (columns 2-4 of setosa).
    x = iris(n_cols)
    assert mv.royston(x, columns=columns).statistic == pytest.approx(stat, abs=1e-3)
    default = mv.royston(x)
    np.testing.assert_allclose(
        [default.statistic, default.pvalue, default.df], literal_royston(x), rtol=1e-10
    )
    assert abs(default.statistic - stat) > 0.05
    with pytest.raises(InputError, match="columns"):
        mv.royston(x, columns="royston")


@pytest.mark.slow
@pytest.mark.parametrize(("n", "d", "n_draws"), [(200, 4, 1000), (2000, 16, 300), (2000, 64, 200)])
def test_issue_15_royston_size_at_user_sizes(n: int, d: int, n_draws: int) -> None:
    # The issue measured .066 / .080 / .089 with MVN's switch; Shapiro-Wilk for every
    # column is calibrated (99.9% binomial band around .05).
    rng = np.random.default_rng(n + d)
    rejected = sum(mv.royston(rng.standard_normal((n, d))).pvalue <= 0.05 for _ in range(n_draws))
    lo, hi = binomial_band(n_draws)
    assert lo <= rejected / n_draws <= hi, rejected / n_draws


def test_royston_extreme_non_normality_stays_finite() -> None:
    rng = np.random.default_rng(1)
    x = np.exp(4 * rng.standard_normal((2000, 2)))
    res = mv.royston(x)
    assert math.isfinite(res.statistic)
    assert res.pvalue < 1e-100


def literal_doornik_hansen(x: np.ndarray) -> tuple[float, float]:
    """Doornik & Hansen (2008) section 3, written with scipy building blocks."""
    n, d = x.shape
    corr = np.corrcoef(x, rowvar=False)
    root = np.real(linalg.sqrtm(np.linalg.inv(corr)))  # C^-1/2 = H L^-1/2 H'
    y = stats.zscore(x, ddof=1) @ root
    skew = stats.skew(y, axis=0)
    kurt = stats.kurtosis(y, axis=0, fisher=False)
    z1 = stats.skewtest(y, axis=0).statistic  # D'Agostino's transform, eq. 2
    delta = (n - 3) * (n + 1) * (n**2 + 15 * n - 4)
    a = (n - 2) * (n + 5) * (n + 7) * (n**2 + 27 * n - 70) / (6 * delta)
    c = (n - 7) * (n + 5) * (n + 7) * (n**2 + 2 * n - 5) / (6 * delta)
    k = (n + 5) * (n + 7) * (n**3 + 37 * n**2 + 11 * n - 313) / (12 * delta)
    alpha = a + skew**2 * c
    chi = (kurt - 1 - skew**2) * 2 * k
    z2 = ((chi / (2 * alpha)) ** (1 / 3) - 1 + 1 / (9 * alpha)) * np.sqrt(9 * alpha)
    e = float(np.sum(z1**2) + np.sum(z2**2))
    return e, stats.chi2.sf(e, 2 * d)


@pytest.mark.parametrize(("n", "d"), [(8, 2), (30, 3), (400, 5), (50, 4)])
def test_doornik_hansen_matches_independent_computation(n: int, d: int) -> None:
    rng = np.random.default_rng(11 * n + d)
    x = rng.gamma(2.0, size=(n, d)) @ rng.standard_normal((d, d)) + 3.0
    res = mv.doornik_hansen(x)
    # Eigen-decomposition vs sqrtm, scipy moments vs ours: 1e-9 relative.
    np.testing.assert_allclose([res.statistic, res.pvalue], literal_doornik_hansen(x), rtol=1e-9)


# -- energy -----------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 64, 300])
@pytest.mark.parametrize("sq_norm", [0.0, 1e-3, 1.0, 64.0, 300.0, 5000.0])
def test_mean_distance_to_normal_matches_noncentral_chi_integral(d: int, sq_norm: float) -> None:
    # E|a - Z| = E sqrt(X), X ~ noncentral chi2(d, |a|^2), by quadrature of its density.
    if sq_norm == 0.0:
        ref = stats.chi(d).mean()
    else:
        ref = stats.ncx2(d, sq_norm).expect(np.sqrt, epsabs=0, epsrel=1e-13)
    got = energy_distance._mean_distance_to_normal(np.array([sq_norm]), d)[0]
    # Quadrature to 1e-13; ours loses ~1e-12 at |a|^2 = 5000 (log-term magnitudes).
    np.testing.assert_allclose(got, ref, rtol=1e-11)


def test_mean_distance_to_normal_matches_integral_identity_vectorised() -> None:
    d = 16
    sq = np.array([0.5, 7.0, 16.0, 40.0, 900.0])

    def identity(lam: float) -> float:
        # sqrt(x) = (2 sqrt(pi))^-1 int_0^inf (1 - exp(-t x)) t^-3/2 dt, under the mgf.
        def f(t: float) -> float:
            return -math.expm1(-(d / 2) * math.log1p(2 * t) - lam * t / (1 + 2 * t)) * t**-1.5

        parts = integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-13, limit=200)[0]
        parts += integrate.quad(f, 1, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
        return parts / (2 * math.sqrt(math.pi))

    np.testing.assert_allclose(
        energy_distance._mean_distance_to_normal(sq, d), [identity(v) for v in sq], rtol=1e-11
    )


def literal_energy(x: np.ndarray) -> float:
    n, d = x.shape
    root = np.real(linalg.sqrtm(np.linalg.inv(np.cov(x, rowvar=False))))
    y = (x - x.mean(axis=0)) @ root
    mean_yz = np.mean(
        [stats.ncx2(d, v).expect(np.sqrt, epsabs=0, epsrel=1e-13) for v in np.sum(y**2, axis=1)]
    )
    mean_zz = 2 * math.gamma((d + 1) / 2) / math.gamma(d / 2)
    mean_yy = 2 * np.sum(spatial.distance.pdist(y)) / n**2
    return float(n * (2 * mean_yz - mean_zz - mean_yy))


@pytest.mark.parametrize(("n", "d"), [(20, 2), (40, 5)])
def test_energy_matches_literal_formula(n: int, d: int) -> None:
    rng = np.random.default_rng(n * d)
    x = rng.exponential(size=(n, d)) @ rng.standard_normal((d, d))
    res = mv.energy(x, n_resamples=0, block_size=7)
    # E is a difference of O(sqrt(d)) means times n: 1e-9 relative.
    np.testing.assert_allclose(res.statistic, literal_energy(x), rtol=1e-9)


def test_energy_univariate_matches_normal_e_formula() -> None:
    # energy::normal.e (d = 1): 2 (sum(2 y Phi(y) + 2 phi(y)) - n / sqrt(pi) - mean(K y)),
    # y sorted and standardised with sd (ddof=1), K = 1 - n, 3 - n, ..., n - 1.
    rng = np.random.default_rng(4)
    x = rng.gamma(3.0, size=37)
    n = x.size
    y = np.sort((x - x.mean()) / x.std(ddof=1))
    k = np.arange(1 - n, n, 2)
    ref = 2 * (
        np.sum(2 * y * stats.norm.cdf(y) + 2 * stats.norm.pdf(y))
        - n / math.sqrt(math.pi)
        - np.mean(k * y)
    )
    np.testing.assert_allclose(mv.energy(x[:, None], n_resamples=0).statistic, ref, rtol=1e-12)


def test_energy_monte_carlo_pvalue_is_seeded_and_valid() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((60, 3))
    a = mv.energy(x, n_resamples=49, seed=3)
    b = mv.energy(x, n_resamples=49, seed=3)
    assert a == b
    assert 1 / 50 <= a.pvalue <= 1.0
    assert (a.pvalue * 50) == pytest.approx(round(a.pvalue * 50))
    skewed = rng.exponential(size=(60, 3)) ** 2
    assert mv.energy(skewed, n_resamples=49, seed=3).pvalue == pytest.approx(1 / 50)


def test_issue_15_energy_statistic_on_all_rows_pvalue_on_null_rows() -> None:
    # The statistic is the all-rows one (R's energy::mvnorm.etest on the whole sample);
    # the p-value is the exact Monte-Carlo p-value of the test on the first null_rows rows.
    rng = np.random.default_rng(1510)
    x = rng.standard_t(5, size=(60, 3))
    res = mv.energy(x, n_resamples=49, seed=4, null_rows=25)
    np.testing.assert_allclose(res.statistic, literal_energy(x), rtol=1e-9)
    assert res.effect_size == pytest.approx(res.statistic / 60)
    sub = mv.energy(x[:25], n_resamples=49, seed=4)
    assert res.pvalue == sub.pvalue
    assert abs(res.statistic - sub.statistic) > 0.1  # the 60-row statistic is another number
    assert "all 60 rows" in (res.method or "") and "first 25 rows" in (res.method or "")
    # null_rows >= n: the ordinary test
    assert mv.energy(x, n_resamples=9, seed=1, null_rows=60) == mv.energy(x, n_resamples=9, seed=1)
    for bad in (2, 2.5, True):
        with pytest.raises(InputError, match="null_rows"):
            mv.energy(x, n_resamples=9, null_rows=bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_issue_15_energy_null_rows_pvalue_is_calibrated() -> None:
    # 300 draws of N(0, I_4) with 600 rows, p-value on 100 of them (49 replicates):
    # rejection rate at .05 in the 99.9% binomial band (exact Monte Carlo by construction).
    rng = np.random.default_rng(1511)
    n_draws = 300
    rejected = sum(
        mv.energy(rng.standard_normal((600, 4)), n_resamples=49, seed=i, null_rows=100).pvalue
        <= 0.05
        for i in range(n_draws)
    )
    lo, hi = binomial_band(n_draws)
    assert lo <= rejected / n_draws <= hi, rejected / n_draws


# -- tests against the prior ------------------------------------------------------------


def test_mean_zero_univariate_equals_t_test() -> None:
    rng = np.random.default_rng(21)
    x = rng.normal(0.3, 2.0, size=(35, 1))
    res = mv.mean_zero(35, x.mean(axis=0), np.cov(x, rowvar=False, bias=True).reshape(1, 1))
    t = stats.ttest_1samp(x[:, 0], 0.0)
    # T^2 = t^2 and F(1, n-1) = t^2(n-1): exact identities, 1e-12.
    np.testing.assert_allclose([res.statistic, res.pvalue], [t.statistic**2, t.pvalue], rtol=1e-12)
    np.testing.assert_allclose(res.effect_size, abs(x.mean()) / x.std(ddof=1), rtol=1e-12)


def test_mean_zero_matches_literal_hotelling() -> None:
    rng = np.random.default_rng(22)
    n, d = 80, 5
    x = rng.standard_normal((n, d)) @ (np.eye(d) + 0.3 * rng.standard_normal((d, d))) + 0.1
    m = x.mean(axis=0)
    res = mv.mean_zero(n, m, np.cov(x, rowvar=False, bias=True))
    t2 = n * m @ np.linalg.solve(np.cov(x, rowvar=False), m)
    p = stats.f.sf((n - d) / (d * (n - 1)) * t2, d, n - d)
    np.testing.assert_allclose([res.statistic, res.pvalue], [t2, p], rtol=1e-11)
    assert res.df == d


def test_cov_identity_matches_literal_and_kl_from_entropies() -> None:
    rng = np.random.default_rng(23)
    n, d = 150, 4
    x = rng.standard_normal((n, d)) @ (np.eye(d) + 0.2 * rng.standard_normal((d, d)))
    s_pop = np.cov(x, rowvar=False, bias=True)
    res = mv.cov_identity(n, s_pop)
    s_u = np.cov(x, rowvar=False)
    nu = n - 1
    rho = 1 - (2 * d**2 + 3 * d - 1) / (6 * nu * (d + 1))
    stat = rho * nu * (np.trace(s_u) - np.linalg.slogdet(s_u)[1] - d)
    np.testing.assert_allclose(
        [res.statistic, res.pvalue], [stat, stats.chi2.sf(stat, d * (d + 1) / 2)], rtol=1e-11
    )
    # KL(N(0,S) || N(0,I)) = cross-entropy - entropy.
    cross = 0.5 * d * math.log(2 * math.pi) + 0.5 * np.trace(s_pop)
    kl = cross - stats.multivariate_normal(np.zeros(d), s_pop).entropy()
    np.testing.assert_allclose(res.effect_size, kl, rtol=1e-10)


def test_cov_identity_of_identity_is_zero() -> None:
    res = mv.cov_identity(1000, np.eye(3) * 999 / 1000)
    assert res.effect_size == pytest.approx(0.5 * (3 * 0.999 - 3 * math.log(0.999) - 3))
    assert res.pvalue > 0.99


# -- Mardia accumulator -----------------------------------------------------------------


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x64 = np.asarray(x, dtype=np.float64)
    return x64.mean(axis=0), np.cov(x64, rowvar=False, bias=True).reshape(x.shape[1], -1)


def pushed(x: np.ndarray, chunk: int, *, third_order: bool = True) -> mv.MardiaAccumulator:
    acc = mv.MardiaAccumulator(*moments(x), third_order=third_order)
    for a in range(0, x.shape[0], chunk):
        acc.push(x[a : a + chunk])
    return acc


def values(results: tuple[TestResult, TestResult]) -> list[float]:
    return [r.statistic for r in results] + [r.pvalue for r in results]


@pytest.mark.parametrize("chunk", [1, 7, 61, 62])
@pytest.mark.parametrize("n", [61, 15])
def test_mardia_accumulator_equals_sample_function(chunk: int, n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_gamma(2.0, size=(n, 4)) @ rng.standard_normal((4, 4))
    acc = pushed(x, chunk)
    assert acc.n_rows == n
    # Streaming sums vs the one-shot sample function: the brief's 1e-10 relative.
    np.testing.assert_allclose(values(acc.results()), values(mv.mardia(x)), rtol=1e-10)


def test_mardia_accumulator_float32_chunks() -> None:
    rng = np.random.default_rng(5)
    x32 = (rng.standard_t(6, size=(500, 3)) * 1e3 + 1e4).astype(np.float32)
    np.testing.assert_allclose(
        values(pushed(x32, 64).results()), values(mv.mardia(x32.astype(np.float64))), rtol=1e-10
    )


def test_mardia_accumulator_merge_laws_and_state() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((90, 3)) ** 2
    mean, cov = moments(x)
    parts = []
    for rows in (x[:20], x[20:55], x[55:]):
        acc = mv.MardiaAccumulator(mean, cov, third_order=True)
        acc.push(rows)
        parts.append(acc)
    a, b, c = parts
    empty = mv.MardiaAccumulator(mean, cov, third_order=True)
    ref = values(mv.mardia(x))
    # Merging re-associates float64 sums: 1e-12.
    np.testing.assert_allclose(values(((a + b) + c).results()), ref, rtol=1e-12)
    np.testing.assert_allclose(values((a + (b + c)).results()), ref, rtol=1e-12)
    np.testing.assert_allclose(values((c + a + b).results()), ref, rtol=1e-12)
    assert values((a + empty).results()) == values(a.results())
    restored = mv.MardiaAccumulator.from_state(a.state())
    assert values(restored.results()) == values(a.results())
    assert values(pickle.loads(pickle.dumps(a)).results()) == values(a.results())


def test_mardia_accumulator_without_third_order_skips_skewness() -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((100, 3))
    skew, kurt = pushed(x, 30, third_order=False).results()
    assert skew.reason is not None and "third-order" in skew.reason
    np.testing.assert_allclose(kurt.statistic, mv.mardia(x)[1].statistic, rtol=1e-10)


def test_mardia_accumulator_rejects_mismatched_merge() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((50, 2))
    mean, cov = moments(x)
    with pytest.raises(InputError, match="different moments"):
        mv.MardiaAccumulator(mean, cov).merge(mv.MardiaAccumulator(mean + 1, cov))
    with pytest.raises(InputError, match="`third_order`"):
        mv.MardiaAccumulator(mean, cov).merge(mv.MardiaAccumulator(mean, cov, third_order=True))
    with pytest.raises(InputError, match="shape"):
        mv.MardiaAccumulator(mean, cov).push(np.ones((4, 3)))


def test_mardia_accumulator_degenerate_covariance() -> None:
    x = np.ones((10, 2))
    x[:, 1] = np.arange(10)
    acc = pushed(x, 4)
    with pytest.warns(DegenerateDimensionWarning, match="constant") as record:
        skew, kurt = acc.results()
    assert record[0].filename == __file__
    assert acc.n_rows == 10
    assert math.isnan(skew.statistic) and kurt.reason is not None


def test_mardia_accumulator_empty_warns() -> None:
    acc = mv.MardiaAccumulator(np.zeros(2), np.eye(2))
    with pytest.warns(SmallSampleWarning, match="n=0"):
        skew, _ = acc.results()
    assert math.isnan(skew.pvalue)


@pytest.mark.parametrize(
    ("n_rows", "n_dims", "expected"),
    [
        (13_000_000, 4, True),
        (14_000_000, 4, False),
        (700_000, 16, True),
        (800_000, 16, False),
        (25_000, 64, True),
        (26_000, 64, False),
    ],
)
def test_third_order_budget(n_rows: int, n_dims: int, expected: bool) -> None:
    assert mv.mardia_third_order_affordable(n_rows, n_dims) is expected
    assert mv.mardia_third_order_affordable(n_rows, n_dims, flop_budget=math.inf)


# -- degenerate and invalid input -------------------------------------------------------

SAMPLE_TESTS = {
    "mardia": lambda x: mv.mardia(x)[0],
    "henze_zirkler": mv.henze_zirkler,
    "royston": mv.royston,
    "doornik_hansen": mv.doornik_hansen,
    "energy": lambda x: mv.energy(x, n_resamples=9, seed=0),
}


def degenerate(kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3))
    if kind == "constant":
        x[:, 1] = 2.5
    elif kind == "collinear":
        x[:, 2] = x[:, 0] - 2 * x[:, 1]
    elif kind == "wide":
        x = rng.standard_normal((5, 8))
    elif kind == "tiny":
        x = rng.standard_normal((2, 1))
    return x


@pytest.mark.parametrize("name", sorted(SAMPLE_TESTS))
@pytest.mark.parametrize(
    ("kind", "warning", "match"),
    [
        ("constant", DegenerateDimensionWarning, r"Column\(s\) \[1\] are constant"),
        ("wide", SmallSampleWarning, "n=5, d=8"),
        ("tiny", SmallSampleWarning, "n=2"),
    ],
)
def test_degenerate_samples_are_skipped(name: str, kind: str, warning: type, match: str) -> None:
    with pytest.warns(warning, match=match) as record:
        res = SAMPLE_TESTS[name](degenerate(kind))
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert math.isnan(res.statistic) and math.isnan(res.pvalue)
    assert res.reason is not None


@pytest.mark.parametrize("name", ["mardia", "henze_zirkler", "doornik_hansen", "energy"])
def test_singular_covariance_is_skipped(name: str) -> None:
    with pytest.warns(DegenerateDimensionWarning, match="singular") as record:
        res = SAMPLE_TESTS[name](degenerate("collinear"))
    assert record[0].filename == __file__
    assert res.reason is not None and math.isnan(res.statistic)


def test_royston_handles_collinear_columns() -> None:
    # Royston needs no inverse covariance: perfectly correlated columns are valid input.
    res = mv.royston(degenerate("collinear"))
    assert math.isfinite(res.statistic) and res.df is not None and res.df > 1


def test_royston_skips_large_samples() -> None:
    x = np.random.default_rng(1).standard_normal((2001, 2))
    with pytest.warns(SmallSampleWarning, match="n=2001"):
        assert mv.royston(x).reason is not None


def test_doornik_hansen_needs_eight_rows() -> None:
    x = np.random.default_rng(1).standard_normal((7, 2))
    with pytest.warns(SmallSampleWarning, match="n >= 8"):
        assert mv.doornik_hansen(x).reason is not None


@pytest.mark.parametrize(
    ("call", "warning", "match"),
    [
        (lambda: mv.mean_zero(3, np.zeros(3), np.eye(3)), SmallSampleWarning, "n=3, d=3"),
        (lambda: mv.cov_identity(4, np.eye(3)), SmallSampleWarning, "n=4, d=3"),
        (
            lambda: mv.mean_zero(50, np.zeros(2), np.ones((2, 2))),
            DegenerateDimensionWarning,
            "singular",
        ),
        (lambda: mv.cov_identity(50, np.diag([1.0, 0.0])), DegenerateDimensionWarning, "constant"),
    ],
)
def test_prior_tests_skip_degenerate_moments(
    call: Callable[[], TestResult], warning: type, match: str
) -> None:
    with pytest.warns(warning, match=match) as record:
        res = call()
    assert res.reason is not None
    assert record[0].filename == __file__


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mv.mardia(np.zeros(5)), "2-D array"),
        (lambda: mv.henze_zirkler(np.zeros((5, 0))), "at least one column"),
        (lambda: mv.royston(np.array([[1.0, np.nan]] * 6)), "6 non-finite"),
        (lambda: mv.henze_zirkler(np.ones((5, 2)), block_size=0), "`block_size` must be at least"),
        (lambda: mv.henze_zirkler(np.ones((5, 2)), block_size=2.5), "`block_size` must be an"),
        (lambda: mv.energy(np.ones((5, 2)), n_resamples=-1), "`n_resamples` must be at least"),
        (lambda: mv.energy(np.ones((5, 2)), n_resamples=1.5), "`n_resamples` must be an"),
        (lambda: mv.mean_zero(10, np.zeros(2), np.eye(3)), "`mean` must have shape"),
        (lambda: mv.cov_identity(10, np.full((2, 2), np.inf)), "must be finite"),
        (lambda: mv.mean_zero(10.0, np.zeros(2), np.eye(2)), "`n` must be an integer"),
    ],
)
def test_invalid_input_raises(call: Callable[[], object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()


# -- calibration under H0 ---------------------------------------------------------------


def binomial_band(n_draws: int, alpha: float = 0.05, level: float = 0.999) -> tuple[float, float]:
    lo = stats.binom.ppf((1 - level) / 2, n_draws, alpha) / n_draws
    hi = stats.binom.isf((1 - level) / 2, n_draws, alpha) / n_draws
    return lo, hi


# name: (test, number of draws, rows per draw). Sizes measured over 4000 draws of
# N(0, I_3) with n = 200: Mardia skewness 0.047, kurtosis 0.040 (conservative), HZ 0.048,
# Doornik-Hansen 0.054, Hotelling 0.049, covariance LRT 0.057, Royston 0.067: Royston's
# chi2 approximation with equivalent df is known to be liberal, so it gets the wider band
# of 400 draws. The energy p-value is exact by construction (Monte Carlo), n = 100 there.
CALIBRATED = {
    "mardia_skewness": (lambda x, i: mv.mardia(x)[0], 1000, 200),
    "mardia_kurtosis": (lambda x, i: mv.mardia(x)[1], 1000, 200),
    "henze_zirkler": (lambda x, i: mv.henze_zirkler(x), 1000, 200),
    "royston": (lambda x, i: mv.royston(x), 400, 200),
    "doornik_hansen": (lambda x, i: mv.doornik_hansen(x), 1000, 200),
    "energy": (lambda x, i: mv.energy(x, n_resamples=99, seed=i), 200, 100),
    "mean_zero": (lambda x, i: mv.mean_zero(x.shape[0], *moments(x)), 1000, 200),
    "cov_identity": (lambda x, i: mv.cov_identity(x.shape[0], moments(x)[1]), 1000, 200),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALIBRATED))
def test_rejection_rate_under_h0(name: str) -> None:
    # Rejection rate (p <= 0.05) inside the 99.9% binomial band around 0.05.
    test, n_draws, n_rows = CALIBRATED[name]
    rng = np.random.default_rng(2024)
    rejected = sum(test(rng.standard_normal((n_rows, 3)), i).pvalue <= 0.05 for i in range(n_draws))
    lo, hi = binomial_band(n_draws)
    assert lo <= rejected / n_draws <= hi, rejected / n_draws


@pytest.mark.parametrize("d", [1, 3, 64, 300, 2000])
def test_mean_distance_series_agrees_with_per_point_windows(d: int) -> None:
    # the bulk shares one power series; outliers (and points far below the median) sum
    # their own windows of Poisson terms: both routes agree, so the split cannot matter
    rng = np.random.default_rng(d)
    sq = np.concatenate(
        [(rng.standard_normal((300, d)) ** 2).sum(axis=1), [0.0, 1e-3, 3.0 * d + 100, 4e4]]
    )
    got = energy_distance._mean_distance_to_normal(sq, d)
    ref = energy_distance._poisson_windows(0.5 * sq, d)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # the same points one at a time (each its own median): the same values
    singly = [
        energy_distance._mean_distance_to_normal(sq[i : i + 1], d)[0] for i in (0, 300, 302, 303)
    ]
    np.testing.assert_allclose(singly, ref[[0, 300, 302, 303]], rtol=1e-12)
