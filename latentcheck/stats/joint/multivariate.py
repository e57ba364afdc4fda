"""Multivariate normality tests and tests of the latents against the prior N(0, I).

Sample-based tests (Mardia, Henze–Zirkler, Royston, Doornik–Hansen, energy) take an
``(n_samples, n_dims)`` array, normally the seeded sample; pairwise sums run in row blocks so
memory stays O(block_size * n_samples). :func:`mean_zero` and :func:`cov_identity` test the
prior from full-data moments. Degenerate input (too few rows, ``n_dims >= n_samples``,
constant columns, singular covariance) gives a warning and a skipped
:class:`~latentcheck.model.report.TestResult`. Mardia's tests, including the mergeable
:class:`MardiaAccumulator` over all rows, live in :mod:`latentcheck.stats.joint.mardia`, and the
shared :class:`Whitening` in :mod:`latentcheck.stats.joint.whitening`; both are importable from
here too.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.errors import InputError
from latentcheck.model.base import TestResult
from latentcheck.stats.joint.common import (
    check_sample,
    normal_sf,
    prepare,
    skip,
    symmetric_pair_sum,
)
from latentcheck.stats.joint.mardia import (
    THIRD_ORDER_FLOP_BUDGET,
    MardiaAccumulator,
    mardia,
    mardia_third_order_affordable,
)
from latentcheck.stats.joint.whitening import (
    Whitening,
    check_moments,
    constant_columns,
    degeneracy_reason,
)

__all__ = [
    "THIRD_ORDER_FLOP_BUDGET",
    "MardiaAccumulator",
    "Whitening",
    "cov_identity",
    "doornik_hansen",
    "energy",
    "henze_zirkler",
    "mardia",
    "mardia_third_order_affordable",
    "mean_zero",
    "royston",
]

FloatArray = NDArray[np.float64]


def henze_zirkler(x: npt.ArrayLike, *, block_size: int = 128) -> TestResult:
    """Henze–Zirkler test of multivariate normality with its log-normal p-value.

    Parameters
    ----------
    x : array_like of shape (n_samples, n_dims)
        Sample, finite values.
    block_size : int, default=128
        Rows per block of pairwise terms (memory ``8 * block_size * n_samples`` bytes).

    Returns
    -------
    TestResult
        Statistic HZ, log-normal p-value, effect size ``HZ / n`` (the weighted L2 distance
        between the empirical and the normal characteristic functions).

    Notes
    -----
    With ``D_jk = (x_j - x_k)' S^-1 (x_j - x_k)``, ``D_j = (x_j - m)' S^-1 (x_j - m)``, S
    the population covariance (as MVN and pingouin) and
    ``b = (n (2d + 1) / 4)^(1/(d+4)) / sqrt(2)``, the paper's optimal smoothing [1]_:

    ``HZ = (1/n) sum_jk exp(-b^2 D_jk / 2)
    - 2 (1 + b^2)^(-d/2) sum_j exp(-b^2 D_j / (2 (1 + b^2))) + n (1 + 2 b^2)^(-d/2)``.

    The p-value is the upper tail of the log-normal distribution with the exact mean and
    variance of HZ under normality [1]_, as in MVN's ``hz``.

    References
    ----------
    .. [1] Henze, N., Zirkler, B. (1990). A class of invariant consistent tests for
       multivariate normality. Communications in Statistics - Theory and Methods 19(10),
       3595-3617. :doi:`10.1080/03610929008830400`
    """
    block_size = _check_block_size(block_size)
    xs = check_sample(x)
    prepared = prepare(xs, "the Henze-Zirkler test", min_rows=3)
    if isinstance(prepared, TestResult):
        return prepared
    y, r2 = prepared
    n, d = y.shape
    b2 = (n * (2.0 * d + 1.0) / 4.0) ** (2.0 / (d + 4.0)) / 2.0

    # One BLAS product gives the exponent -b^2 D_jk / 2 = b^2 y_j'y_k - b^2 (|y_j|^2 +
    # |y_k|^2) / 2 through augmented columns. The n diagonal terms are exactly 1: summing
    # the others apart keeps HZ - 1 accurate in high dimensions, where every other term is
    # tiny and HZ is 1 + O(1e-9).
    ones = np.ones((n, 1))
    left = np.hstack([b2 * y, -0.5 * b2 * r2[:, None], -0.5 * b2 * ones])
    right = np.hstack([y, ones, r2[:, None]])
    off_diagonal = symmetric_pair_sum(left, right, _exp, block_size=block_size, diagonal=0.0)
    a = 1.0 + 2.0 * b2
    excess = (
        off_diagonal / n
        - 2.0 * (1.0 + b2) ** (-d / 2.0) * float(np.sum(np.exp(-b2 * r2 / (2.0 * (1.0 + b2)))))
        + n * a ** (-d / 2.0)
    )
    hz = 1.0 + excess
    lognormal = _hz_lognormal(b2, d)
    if lognormal is None:
        return skip(
            f"Henze-Zirkler's null variance underflows for d={d} (b^2={b2:.3g}); "
            "the log-normal p-value is undefined"
        )
    log_mean, log_sd = lognormal
    pvalue = normal_sf((math.log1p(excess) - log_mean) / log_sd) if excess > -1.0 else 1.0
    return TestResult(
        statistic=hz,
        pvalue=pvalue,
        effect_size=hz / n,
        method="log-normal approximation with the exact null mean and variance (MVN `hz`)",
    )


_ROYSTON_W = {
    "shapiro_wilk": "Shapiro-Wilk for every column",
    "mvn": "Shapiro-Francia through the Shapiro-Wilk transform where kurtosis > 3 (MVN `royston`)",
    "francia": "Shapiro-Francia with Royston's (1993) transform where kurtosis > 3",
}


def royston(x: npt.ArrayLike, *, columns: str = "shapiro_wilk") -> TestResult:
    """Royston's test of multivariate normality (Shapiro–Wilk / Shapiro–Francia based).

    Parameters
    ----------
    x : array_like of shape (n_samples, n_dims)
        Sample, finite values, 4 <= n_samples <= 2000.
    columns : {"shapiro_wilk", "mvn", "francia"}, default="shapiro_wilk"
        The W of each column. "shapiro_wilk": Shapiro–Wilk's W for every column (sizes
        .049 / .047 / .060 at (200, 4) / (2000, 16) / (2000, 64), measured). "mvn": as
        MVN's ``royston``, Shapiro–Francia's W' where the column's kurtosis exceeds 3, sent
        through the Shapiro–Wilk transform; it reproduces MVN's published values but
        over-rejects (.069 / .058 / .117). "francia": the same switch with Royston's own
        (1993) transform for W' (.069 / .077 / .153): choosing the statistic by the
        sample's kurtosis selects columns whose z is already high (mean z +0.10 to +0.15
        at n = 200-2000), which is why the default uses no switch.

    Returns
    -------
    TestResult
        Statistic H, chi2 p-value with the equivalent degrees of freedom ``e`` in ``df``.

    Notes
    -----
    Per column, W is Shapiro–Wilk's statistic (with ``columns="mvn"`` or ``"francia"``,
    Shapiro–Francia's W', the squared correlation of the order statistics with
    ``Phi^-1((i - 3/8)/(n + 1/4))``, when the column's kurtosis ``m4 / m2^2`` exceeds 3,
    as in Royston 1983 and MVN). W is normalised by Royston's (1992)
    transforms to ``z_j``, then ``k_j = Phi^-1(Phi(-z_j) / 2)^2`` and
    ``H = e sum_j k_j / d`` with ``e = d / (1 + (d - 1) c)``, ``c`` the mean over pairs of
    ``r^5 (1 - 0.715 (1 - r)^0.715 / v(n))`` of the Pearson correlations r [1]_ [2]_.
    The transforms were fitted for 4 <= n <= 2000, so larger samples are skipped.
    Shapiro–Francia's W' has its own null law: ``z = (ln(1 - W') - mu) / sigma`` with
    ``u = ln n``, ``v = ln u``, ``mu = -1.2725 + 1.0521 (v - u)`` and
    ``sigma = 1.0308 - 0.26758 (v + 2 / u)`` (Royston 1993, as nortest's ``sf.test``) [3]_;
    a sample of n <= 4 never has kurtosis above 3, so the branch only meets n >= 5.

    References
    ----------
    .. [1] Royston, J. P. (1983). Some techniques for assessing multivariate normality
       based on the Shapiro-Wilk W. Applied Statistics 32(2), 121-133.
       :doi:`10.2307/2347291`
    .. [2] Royston, P. (1992). Approximating the Shapiro-Wilk W-test for non-normality.
       Statistics and Computing 2, 117-119. :doi:`10.1007/BF01891203`
    .. [3] Royston, P. (1993). A pocket-calculator algorithm for the Shapiro-Francia test
       for non-normality: an application to medicine. Statistics in Medicine 12(2),
       181-184. :doi:`10.1002/sim.4780120209`
    """
    from scipy.special import chdtrc, log_ndtr, ndtri_exp
    from scipy.stats import shapiro

    if columns not in ("shapiro_wilk", "mvn", "francia"):
        raise InputError(f'`columns` must be "shapiro_wilk", "mvn" or "francia", got {columns!r}')
    xs = check_sample(x)
    n, d = xs.shape
    if n < 4 or n > 2000:
        return skip(
            f"Royston's test needs 4 <= n <= 2000 (the range of Royston's W transform), "
            f"got n={n}; pass a subsample of at most 2000 rows",
            small=True,
        )
    if n <= d:
        return skip(f"Too few rows for Royston's test: need n > d, got n={n}, d={d}", small=True)
    xc = xs - xs.mean(axis=0)
    xc2 = xc * xc
    m2 = np.mean(xc2, axis=0)
    constant = constant_columns(xs.mean(axis=0), m2)
    if constant:
        return skip(f"Column(s) {constant} are constant; Royston's test needs variance > 0")
    w = np.empty(d)
    kurt = np.mean(xc2 * xc2, axis=0) / m2**2
    for j in range(d):
        switch = columns != "shapiro_wilk" and kurt[j] > 3.0
        w[j] = _shapiro_francia(xs[:, j]) if switch else float(shapiro(xs[:, j])[0])
    with np.errstate(divide="ignore"):
        log1mw = np.log1p(-np.minimum(w, 1.0))
    if n <= 11:
        g = -2.273 + 0.459 * n
        m = 0.544 - 0.39978 * n + 0.025054 * n**2 - 0.0006714 * n**3
        s = math.exp(1.3822 - 0.77857 * n + 0.062767 * n**2 - 0.0020322 * n**3)
        z = (-np.log(g - log1mw) - m) / s
    else:
        lx = math.log(n)
        m = -1.5861 - 0.31082 * lx - 0.083751 * lx**2 + 0.0038915 * lx**3
        s = math.exp(-0.4803 - 0.082676 * lx + 0.0030302 * lx**2)
        z = (log1mw - m) / s
    sf_cols = kurt > 3.0
    if columns == "francia" and np.any(sf_cols):
        u = math.log(n)
        v_ = math.log(u)
        mu_sf = -1.2725 + 1.0521 * (v_ - u)
        sigma_sf = 1.0308 - 0.26758 * (v_ + 2.0 / u)
        z = np.where(sf_cols, (log1mw - mu_sf) / sigma_sf, z)
    # Phi^-1(Phi(-z)/2) in log space: stays finite where Phi(-z) underflows.
    k = ndtri_exp(log_ndtr(-z) - math.log(2.0)) ** 2
    corr = np.corrcoef(xs, rowvar=False).reshape(d, d)
    off = corr[~np.eye(d, dtype=bool)]
    lx = math.log(n)
    v = 0.21364 + 0.015124 * lx**2 - 0.0018034 * lx**3
    nc = off**5 * (1.0 - 0.715 * np.maximum(1.0 - off, 0.0) ** 0.715 / v)
    c = float(np.sum(nc)) / (d * d - d) if d > 1 else 0.0
    edf = d / (1.0 + (d - 1.0) * c)
    if not (math.isfinite(edf) and edf > 0):
        return skip(f"Royston's equivalent degrees of freedom are not positive ({edf:.4g})")
    h = edf * float(np.sum(k)) / d
    return TestResult(
        statistic=h,
        pvalue=float(chdtrc(edf, h)),
        df=edf,
        method="chi2 approximation with Royston's equivalent df; W: " + _ROYSTON_W[columns],
    )


def doornik_hansen(x: npt.ArrayLike) -> TestResult:
    """Doornik–Hansen omnibus test of multivariate normality.

    Parameters
    ----------
    x : array_like of shape (n_samples, n_dims)
        Sample, finite values, n_samples >= 8.

    Returns
    -------
    TestResult
        Statistic ``E = Z1'Z1 + Z2'Z2``, chi2 p-value with ``2 d`` df.

    Notes
    -----
    As defined by Doornik & Hansen [1]_: with V = diag(S)^-1/2, the correlation
    matrix ``C = V S V = H L H'`` and ``y_i = H L^-1/2 H' V (x_i - m)``, each transformed
    column's skewness ``sqrt(b1)`` and kurtosis ``b2`` (moment ratios, ddof=0) are mapped to
    ``Z1`` by D'Agostino's transform and to ``Z2`` by the Wilson–Hilferty cube root of
    Shenton & Bowman's gamma approximation. MVN's ``doornik_hansen`` centres the
    data with a recycled mean vector, so its published values differ; this follows the
    paper.

    References
    ----------
    .. [1] Doornik, J. A., Hansen, H. (2008). An omnibus test for univariate and
       multivariate normality. Oxford Bulletin of Economics and Statistics 70(s1),
       927-939. :doi:`10.1111/j.1468-0084.2008.00537.x`
    """
    from scipy.special import chdtrc

    xs = check_sample(x)
    prepared = prepare(xs, "the Doornik-Hansen test", min_rows=8)
    if isinstance(prepared, TestResult):
        return prepared
    n, d = xs.shape
    xc = xs - xs.mean(axis=0)
    cov = xc.T @ xc / (n - 1.0)
    inv_sd = 1.0 / np.sqrt(np.diag(cov))
    corr = cov * inv_sd[:, None] * inv_sd[None, :]
    lam, vecs = np.linalg.eigh(corr)
    y = (xc * inv_sd) @ (vecs * lam**-0.5) @ vecs.T
    y2 = y * y  # products, not y**3 and y**4: numpy's pow is ten times slower
    m2 = np.mean(y2, axis=0)
    skew = np.mean(y2 * y, axis=0) / m2**1.5
    kurt = np.mean(y2 * y2, axis=0) / m2**2
    nf = float(n)
    # Doornik & Hansen 2008: D'Agostino's (1970) transform of the skewness.
    beta_den = (nf - 2) * (nf + 5) * (nf + 7) * (nf + 9)
    beta = 3.0 * (nf**2 + 27 * nf - 70) * (nf + 1) * (nf + 3) / beta_den
    w2 = -1.0 + math.sqrt(2.0 * (beta - 1.0))
    delta = 1.0 / math.sqrt(math.log(math.sqrt(w2)))
    yy = skew * math.sqrt((w2 - 1.0) / 2.0 * (nf + 1) * (nf + 3) / (6.0 * (nf - 2)))
    z1 = delta * np.arcsinh(yy)
    # Doornik & Hansen 2008: Shenton & Bowman's gamma approximation of the kurtosis,
    # Wilson-Hilferty cube root.
    dl = (nf - 3) * (nf + 1) * (nf**2 + 15 * nf - 4)
    a = (nf - 2) * (nf + 5) * (nf + 7) * (nf**2 + 27 * nf - 70) / (6.0 * dl)
    c = (nf - 7) * (nf + 5) * (nf + 7) * (nf**2 + 2 * nf - 5) / (6.0 * dl)
    k = (nf + 5) * (nf + 7) * (nf**3 + 37 * nf**2 + 11 * nf - 313) / (12.0 * dl)
    alpha = a + c * skew**2
    chi = 2.0 * k * (kurt - 1.0 - skew**2)
    z2 = (np.cbrt(chi / (2.0 * alpha)) - 1.0 + 1.0 / (9.0 * alpha)) * np.sqrt(9.0 * alpha)
    stat = float(np.sum(z1**2) + np.sum(z2**2))
    return TestResult(
        statistic=stat,
        pvalue=float(chdtrc(2.0 * d, stat)),
        df=2.0 * d,
        method="chi2 approximation with 2d df (Doornik & Hansen 2008)",
    )


def energy(
    x: npt.ArrayLike,
    *,
    n_resamples: int = 199,
    seed: int | None = None,
    block_size: int = 128,
    null_rows: int | None = None,
) -> TestResult:
    """Energy test of multivariate normality (Székely & Rizzo) with a Monte-Carlo p-value.

    Parameters
    ----------
    x : array_like of shape (n_samples, n_dims)
        Sample, finite values.
    n_resamples : int, default=199
        Monte-Carlo replicates: standard-normal samples of the same shape, each
        standardised by its own estimates. 0 gives the statistic and a NaN p-value.
    seed : int or None, default=None
        Seed of ``np.random.default_rng`` for the replicates.
    block_size : int, default=128
        Rows per block of pairwise distances.
    null_rows : int or None, default=None
        When given and smaller than n, the Monte-Carlo p-value is that of the test on the
        first `null_rows` rows (the statistic recomputed on them, replicates of that
        size), while the reported statistic stays the one on all n rows. This keeps the
        p-value exact and fast (replicates cost O(null_rows² d) each) and the statistic
        equal to R's ``energy::mvnorm.etest`` on the whole sample. Replicates of fewer rows
        are not a valid null for the all-rows statistic at large d: the null mean of E
        drifts with n (4.2223 at 500 rows, 4.2264 at 5000 for d = 64, an sd of .0073).

    Returns
    -------
    TestResult
        Statistic E, p-value ``(1 + #{E* >= E}) / (R + 1)``, effect size ``E / n`` (the
        energy distance between the standardised sample and N(0, I)).

    Notes
    -----
    With ``y_i = S^-1/2 (x_i - m)``, S the unbiased covariance (ddof=1, as
    ``energy::mvnorm.e``) and Z ~ N(0, I_d) [1]_:

    ``E = n (2/n sum_i E|y_i - Z| - E|Z - Z'| - 1/n^2 sum_ij |y_i - y_j|)``, where
    ``E|Z - Z'| = 2 Gamma((d+1)/2) / Gamma(d/2)`` and ``E|a - Z| = sqrt(2) Gamma((d+1)/2) /
    Gamma(d/2) 1F1(-1/2; d/2; -|a|^2/2)``, evaluated here as its Poisson mixture
    ``sum_k Pois(k; |a|^2/2) sqrt(2) Gamma((d+1)/2+k) / Gamma(d/2+k)`` (all terms positive).
    The replicates follow ``energy::mvnorm.test`` (parametric bootstrap from N(0, I), the
    statistic being affine invariant); the p-value adds one to numerator and denominator
    [2]_, where energy reports ``mean(E* >= E)``.

    References
    ----------
    .. [1] Székely, G. J., Rizzo, M. L. (2005). A new test for multivariate normality.
       Journal of Multivariate Analysis 93(1), 58-80. :doi:`10.1016/j.jmva.2003.12.002`
    .. [2] Phipson, B., Smyth, G. K. (2010). Permutation p-values should never be zero.
       Statistical Applications in Genetics and Molecular Biology 9(1), 39.
       :doi:`10.2202/1544-6115.1585`
    """
    block_size = _check_block_size(block_size)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise InputError(f"`n_resamples` must be an integer, got {n_resamples!r}")
    if n_resamples < 0:
        raise InputError(f"`n_resamples` must be at least 0, got {n_resamples}")
    xs = check_sample(x)
    prepared = prepare(xs, "the energy test", min_rows=3, ddof=1)
    if isinstance(prepared, TestResult):
        return prepared
    y, r2 = prepared
    n, d = y.shape
    stat = _energy_statistic(y, r2, block_size)
    pvalue = math.nan
    m, stat_m = n, stat
    if null_rows is not None:
        if isinstance(null_rows, bool) or not isinstance(null_rows, (int, np.integer)):
            raise InputError(f"`null_rows` must be an integer, got {null_rows!r}")
        if null_rows < 3:
            raise InputError(f"`null_rows` must be at least 3, got {null_rows}")
        if null_rows < n and n_resamples > 0:
            sub = prepare(xs[:null_rows], "the energy test", min_rows=3, ddof=1)
            if isinstance(sub, TestResult):  # the first rows alone are degenerate
                return TestResult(
                    statistic=stat,
                    pvalue=math.nan,
                    effect_size=stat / n,
                    method=f"statistic only: no p-value on the first {null_rows} rows "
                    f"({sub.reason})",
                )
            m = int(null_rows)
            stat_m = _energy_statistic(sub[0], sub[1], block_size)
    if n_resamples > 0:
        rng = np.random.default_rng(seed)
        exceed = 0
        for _ in range(n_resamples):
            z = rng.standard_normal((m, d))
            zc = z - z.mean(axis=0)
            w = np.linalg.inv(np.linalg.cholesky(zc.T @ zc / (m - 1.0))).T
            yz = zc @ w
            exceed += _energy_statistic(yz, np.einsum("ij,ij->i", yz, yz), block_size) >= stat_m
        pvalue = (1.0 + exceed) / (n_resamples + 1.0)
    return TestResult(
        statistic=stat,
        pvalue=pvalue,
        effect_size=stat / n,
        method=(
            (
                f"statistic on all {n} rows; Monte-Carlo p-value of the test on the first "
                f"{m} rows from {n_resamples} standard-normal replicates of {m} rows "
                "(energy `mvnorm.test`), (1 + #{E* >= E}) / (R + 1)"
            )
            if n_resamples > 0 and m < n
            else (
                f"Monte-Carlo p-value from {n_resamples} standard-normal replicates "
                "(energy `mvnorm.test`), (1 + #{E* >= E}) / (R + 1)"
            )
            if n_resamples > 0
            else "statistic only (n_resamples=0)"
        ),
    )


def mean_zero(n: int, mean: npt.ArrayLike, cov: npt.ArrayLike) -> TestResult:
    """Hotelling's T² test that the mean is 0, from full-data moments.

    Parameters
    ----------
    n : int
        Number of rows the moments come from.
    mean : array_like of shape (n_dims,)
        Sample mean.
    cov : array_like of shape (n_dims, n_dims)
        Population covariance (ddof=0).

    Returns
    -------
    TestResult
        Statistic ``T^2 = n m' S_u^-1 m`` (S_u the unbiased covariance), p-value from
        ``F = (n - d) / (d (n - 1)) T^2 ~ F(d, n - d)``, ``df = d`` (numerator; the
        denominator ``n - d`` is in ``method``), effect size the Mahalanobis length of the
        mean ``sqrt(m' S_u^-1 m)``, in standard deviations of the data.

    References
    ----------
    .. [1] Hotelling, H. (1931). The generalization of Student's ratio. Annals of
       Mathematical Statistics 2(3), 360-378. :doi:`10.1214/aoms/1177732979`
    """
    from scipy.special import fdtrc

    n = _check_n(n)
    mean_arr, cov_arr = check_moments(mean, cov)
    d = mean_arr.shape[0]
    if n <= d:
        return skip(f"Hotelling's T^2 needs n > d rows, got n={n}, d={d}", small=True)
    reason = degeneracy_reason(mean_arr, cov_arr)
    if reason is not None:
        return skip(reason)
    chol = np.linalg.cholesky(cov_arr * (n / (n - 1.0)))
    u = np.linalg.solve(chol, mean_arr)
    d2 = float(np.dot(u, u))
    t2 = n * d2
    f = (n - d) / (d * (n - 1.0)) * t2
    return TestResult(
        statistic=t2,
        pvalue=float(fdtrc(d, n - d, f)),
        df=float(d),
        effect_size=math.sqrt(d2),
        method=f"Hotelling T^2, exact F({d}, {n - d}) p-value under normality",
    )


def cov_identity(n: int, cov: npt.ArrayLike) -> TestResult:
    """Likelihood-ratio test that the covariance is the identity, from full-data moments.

    Parameters
    ----------
    n : int
        Number of rows the covariance comes from.
    cov : array_like of shape (n_dims, n_dims)
        Population covariance (ddof=0).

    Returns
    -------
    TestResult
        Statistic ``rho nu (tr S_u - ln det S_u - d)``, chi2 p-value with ``d (d+1) / 2``
        df, effect size ``KL(N(0, S) || N(0, I)) = (tr S - ln det S - d) / 2`` nats (S the
        population covariance).

    Notes
    -----
    The modified likelihood-ratio criterion for ``Sigma = I`` with unknown mean uses
    ``nu = n - 1`` and the unbiased ``S_u``; Bartlett's correction
    ``rho = 1 - (2 d^2 + 3 d - 1) / (6 nu (d + 1))`` makes the chi2 approximation exact
    to O(nu^-2) [1]_ (section 10.8), [2]_ (section 8.4).

    References
    ----------
    .. [1] Anderson, T. W. (2003). An Introduction to Multivariate Statistical Analysis,
       3rd ed. Wiley. ISBN 978-0-471-36091-9
    .. [2] Muirhead, R. J. (1982). Aspects of Multivariate Statistical Theory. Wiley.
       :doi:`10.1002/9780470316559`
    """
    from scipy.special import chdtrc

    n = _check_n(n)
    _, cov_arr = check_moments(np.zeros(np.shape(cov)[:1]), cov)
    d = cov_arr.shape[0]
    nu = n - 1.0
    if nu <= d:
        return skip(f"The covariance test needs n > d + 1 rows, got n={n}, d={d}", small=True)
    reason = degeneracy_reason(np.zeros(d), cov_arr)
    if reason is not None:
        return skip(reason)
    logdet = float(np.linalg.slogdet(cov_arr)[1])
    kl = max(0.5 * (float(np.trace(cov_arr)) - logdet - d), 0.0)
    s_u = cov_arr * (n / nu)
    lr = nu * (float(np.trace(s_u)) - logdet - d * math.log(n / nu) - d)
    rho = 1.0 - (2.0 * d * d + 3.0 * d - 1.0) / (6.0 * nu * (d + 1.0))
    # tr S - ln det S - d >= 0 for every S > 0; clip its rounding error at S = I.
    stat = rho * max(lr, 0.0)
    df = d * (d + 1) / 2.0
    return TestResult(
        statistic=stat,
        pvalue=float(chdtrc(df, stat)),
        df=df,
        effect_size=kl,
        method="likelihood ratio with Bartlett correction, chi2 approximation",
    )


# -- helpers -----------------------------------------------------------------------------


def _check_n(n: int) -> int:
    """Return n as an int or raise InputError."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"`n` must be an integer, got {n!r}")
    return int(n)


def _check_block_size(block_size: int) -> int:
    """Return block_size as a positive int or raise InputError."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise InputError(f"`block_size` must be an integer, got {block_size!r}")
    if block_size < 1:
        raise InputError(f"`block_size` must be at least 1, got {block_size}")
    return int(block_size)


def _exp(g: FloatArray) -> FloatArray:
    """Return exp(g), overwriting g."""
    return np.exp(g, out=g)


def _distance(g: FloatArray) -> FloatArray:
    """Return sqrt(max(g, 0)) (distances from squared distances), overwriting g."""
    np.maximum(g, 0.0, out=g)
    return np.sqrt(g, out=g)


def _hz_lognormal(b2: float, d: int) -> tuple[float, float] | None:
    """Return (meanlog, sdlog) of HZ's log-normal null approximation, None on underflow.

    Henze & Zirkler 1990: E[HZ] = 1 - mu_deficit and Var[HZ] = si2 under normality; log1p
    keeps the parameters exact when si2 is far below machine epsilon (large d).
    """
    a = 1.0 + 2.0 * b2
    b4 = b2 * b2
    b8 = b4 * b4
    wb = (1.0 + b2) * (1.0 + 3.0 * b2)
    mu_deficit = a ** (-d / 2.0) * (1.0 + d * b2 / a + d * (d + 2.0) * b4 / (2.0 * a * a))
    si2_a = 2.0 * a ** (-d) * (1.0 + 2.0 * d * b4 / a**2 + 3.0 * d * (d + 2.0) * b8 / (4.0 * a**4))
    si2_w = (
        4.0
        * wb ** (-d / 2.0)
        * (1.0 + 3.0 * d * b4 / (2.0 * wb) + d * (d + 2.0) * b8 / (2.0 * wb**2))
    )
    si2 = 2.0 * (1.0 + 4.0 * b2) ** (-d / 2.0) + si2_a - si2_w
    log_var_ratio = math.log1p(si2 / (1.0 - mu_deficit) ** 2)
    if not log_var_ratio > 0:
        return None
    return math.log1p(-mu_deficit) - 0.5 * log_var_ratio, math.sqrt(log_var_ratio)


def _shapiro_francia(col: FloatArray) -> float:
    """Return the Shapiro–Francia W' of one column (as nortest::sf.test)."""
    from scipy.special import ndtri

    n = col.shape[0]
    scores = ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    r = np.corrcoef(np.sort(col), scores)[0, 1]
    return float(r * r)


def _energy_statistic(y: FloatArray, sq: FloatArray, block_size: int) -> float:
    """Return Székely & Rizzo's E statistic of a standardised sample."""
    from scipy.special import gammaln

    n, d = y.shape

    # |y_j - y_k|^2 = |y_j|^2 + |y_k|^2 - 2 y_j'y_k from one BLAS product (augmented).
    ones = np.ones((n, 1))
    left = np.hstack([y, sq[:, None], ones])
    right = np.hstack([-2.0 * y, ones, sq[:, None]])
    mean_yy = symmetric_pair_sum(left, right, _distance, block_size=block_size, diagonal=0.0) / n**2
    mean_zz = 2.0 * math.exp(float(gammaln((d + 1) / 2.0) - gammaln(d / 2.0)))
    mean_yz = float(np.mean(_mean_distance_to_normal(sq, d)))
    return float(n * (2.0 * mean_yz - mean_zz - mean_yy))


def _mean_distance_to_normal(sq_norms: FloatArray, d: int) -> FloatArray:
    """Return E|a - Z|, Z ~ N(0, I_d), for each squared norm |a|^2 in sq_norms.

    |a - Z|^2 is noncentral chi2 with d df and noncentrality |a|^2, a Poisson(|a|^2/2)
    mixture of central chi2 with d + 2k df, and E sqrt(chi2_v) = sqrt(2) G((v+1)/2)/G(v/2).
    Each point needs the Poisson terms within +-(9 sqrt(mu) + 25) of mu = |a|^2/2: by
    Bernstein's inequality the mass left out is below exp(-37) relative. The points near
    the bulk share one power series in mu (see _poisson_series); the rest (outliers of
    a data sample) sum their own windows of terms (see _poisson_windows).
    """
    mu = 0.5 * np.asarray(sq_norms, dtype=np.float64)
    out = np.empty_like(mu)
    if mu.size == 0:
        return out
    # the series' degree is set by its largest point: keep it within the window of twice
    # the median, and its magnitudes, exp(mu - scale) and below, far from overflow and
    # underflow
    scale = max(float(np.median(mu)), 1.0)
    series = (mu <= min(_window_end(2.0 * scale + 50.0), scale + 600.0)) & (mu >= scale - 600.0)
    near = np.flatnonzero(series)
    if near.size:
        out[near] = _poisson_series(mu[near], d, scale=scale)
    far = np.flatnonzero(~series)
    if far.size:
        out[far] = _poisson_windows(mu[far], d)
    return out


def _window_end(mu: float) -> float:
    """Return the last Poisson term _mean_distance_to_normal keeps for `mu`."""
    return math.floor(mu) + math.ceil(9.0 * math.sqrt(mu) + 25.0)


def _log_chi_terms(c: float, k: FloatArray) -> FloatArray:
    """Return log of sqrt(2) G(c + 1/2 + k) / G(c + k) / k!, the Poisson-weighted chi means."""
    from scipy.special import gammaln

    out: FloatArray = 0.5 * math.log(2.0) + gammaln(c + 0.5 + k) - gammaln(c + k) - gammaln(k + 1.0)
    return out


def _poisson_series(mu: FloatArray, d: int, *, scale: float) -> FloatArray:
    """Return sum_k Pois(k; mu) m_(d+2k) for points near `scale`, as one power series.

    ``sum_k e^-mu mu^k t_k = e^(scale - mu) sum_k (t_k scale^k e^-scale) (mu/scale)^k``
    with t_k = exp(_log_chi_terms): the coefficients stay within range, and Horner's
    rule over all points at once costs two vector operations per term (all terms are
    positive, so it loses at most K rounding errors). It includes every term of each
    point's window, from k = 0 to the largest window's end K.
    """
    top = int(_window_end(float(np.max(mu))))
    k = np.arange(top + 1, dtype=np.float64)
    coef = np.exp(_log_chi_terms(0.5 * d, k) + k * math.log(scale) - scale)
    u = mu / scale
    acc = np.full_like(u, coef[top])
    for c in coef[top - 1 :: -1]:
        acc *= u
        acc += c
    out: FloatArray = acc * np.exp(scale - mu)
    return out


def _poisson_windows(mu: FloatArray, d: int) -> FloatArray:
    """Return sum_k Pois(k; mu) m_(d+2k), each point over its own window of terms.

    Points are grouped by window width so one outlier does not widen every row.
    """
    half = np.ceil(9.0 * np.sqrt(mu) + 25.0).astype(np.int64)
    start = np.maximum(np.floor(mu).astype(np.int64) - half, 0)
    width = np.floor(mu).astype(np.int64) + half + 1 - start
    group = np.ceil(np.log2(width)).astype(np.int64)
    k_all = np.arange(int(np.max(start)) + 2 * int(np.max(width)) + 1, dtype=np.float64)
    log_term_k = _log_chi_terms(0.5 * d, k_all)
    # mu = 0 leaves only k = 0: a floor of 1e-300 gives the other terms exp(-690 k).
    log_mu = np.log(np.maximum(mu, 1e-300))
    out = np.empty_like(mu)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        k = start[idx, None] + np.arange(int(np.max(width[idx])))
        log_t = k * log_mu[idx, None]
        log_t += log_term_k[k]
        log_t -= mu[idx, None]
        out[idx] = np.sum(np.exp(log_t, out=log_t), axis=1)
    return out
