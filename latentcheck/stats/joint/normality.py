"""Tests of multivariate normality on a sample: Henze–Zirkler, Royston, Doornik–Hansen.

Each takes an ``(n_samples, n_dims)`` array, normally the seeded sample. Henze–Zirkler's
pairwise sums run in row blocks so memory stays O(block_size * n_samples). Degenerate
input (too few rows, ``n_dims >= n_samples``, constant columns, singular covariance) gives
a warning and a skipped :class:`~latentcheck.model.report.TestResult`. The energy test is
in :mod:`latentcheck.stats.joint.energy_distance`, Mardia's in
:mod:`latentcheck.stats.joint.mardia`; :mod:`latentcheck.stats.joint.multivariate` gathers
them all.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.errors import InputError
from latentcheck.model.base import TestResult
from latentcheck.stats.joint.common import (
    check_block_size,
    check_sample,
    normal_sf,
    prepare,
    skip,
    symmetric_pair_sum,
)
from latentcheck.stats.joint.whitening import constant_columns

__all__ = ["doornik_hansen", "henze_zirkler", "royston"]

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
    block_size = check_block_size(block_size)
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
    y2 = y * y  # products, not y**3 and y**4: numpy's pow is much slower
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


# -- helpers -----------------------------------------------------------------------------


def _exp(g: FloatArray) -> FloatArray:
    """Return exp(g), overwriting g."""
    return np.exp(g, out=g)


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
