"""Two-sample statistics for ``compare``: whether two data sets of latents differ.

Per dimension: the Kolmogorov–Smirnov test and the Wasserstein-1 distance on two seeded
samples of rows, and, when only the moments of one side are known (a saved report),
large-sample z-tests of equal means and equal log-stds. Jointly: the energy distance with
a seeded permutation p-value, every pairwise sum computed in row blocks. Multiplicity
corrections: Holm and Benjamini–Hochberg.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import validation as v
from ..errors import InputError, SmallSampleWarning
from ..model.base import Normalization, TestResult

__all__ = [
    "adjust_pvalues",
    "energy_two_sample",
    "global_tests",
    "ks_columns",
    "moment_tests",
    "scale_columns",
    "wasserstein_columns",
]

F64 = NDArray[np.float64]
Z975 = 1.959963984540054  # Φ⁻¹(0.975), the factor of the reports' 95% intervals


def adjust_pvalues(pvalues: ArrayLike, method: str = "holm") -> F64:
    """Return p-values adjusted for multiplicity, ignoring NaN entries.

    Parameters
    ----------
    pvalues : array_like of shape (n_tests,)
    method : {"holm", "bh"}, default="holm"
        ``"holm"``: Holm's step-down method, controlling the family-wise error rate under
        any dependence [1]_. ``"bh"``: Benjamini–Hochberg step-up adjusted p-values
        (``scipy.stats.false_discovery_control``), controlling the false discovery rate
        for independent or positively dependent tests [2]_.

    Returns
    -------
    ndarray of shape (n_tests,)

    References
    ----------
    .. [1] Holm, S. (1979). A simple sequentially rejective multiple test procedure.
       Scand. J. Statist. 6, 65-70.
    .. [2] Benjamini, Y., Hochberg, Y. (1995). Controlling the false discovery rate.
       J. R. Statist. Soc. B 57(1), 289-300. :doi:`10.1111/j.2517-6161.1995.tb02031.x`
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if method == "holm":
        from .normality import holm

        return holm(p)
    if method != "bh":
        raise InputError(f"`correction` must be holm or bh, got {method!r}")
    from scipy.stats import false_discovery_control

    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def wasserstein_columns(x: ArrayLike, y: ArrayLike) -> F64:
    """Return the Wasserstein-1 distance between the empirical distributions of each column.

    Parameters
    ----------
    x : array_like of shape (n_x, n_dims)
    y : array_like of shape (n_y, n_dims)

    Returns
    -------
    ndarray of shape (n_dims,)
        In the data's units.

    Notes
    -----
    W1 = ∫ |F_x(t) − F_y(t)| dt [1]_; for n_x = n_y it equals the mean absolute difference
    of the sorted samples, mean_i |x_(i) − y_(i)|.

    References
    ----------
    .. [1] Vallender, S. S. (1974). Calculation of the Wasserstein distance between
       probability distributions on the line. Theory Probab. Appl. 18(4), 784-786.
       :doi:`10.1137/1118101`
    """
    xs = np.sort(np.asarray(x, dtype=np.float64), axis=0)
    ys = np.sort(np.asarray(y, dtype=np.float64), axis=0)
    if xs.shape[0] == ys.shape[0]:
        return np.asarray(np.mean(np.abs(xs - ys), axis=0), dtype=np.float64)
    out = np.empty(xs.shape[1])
    for j in range(xs.shape[1]):
        grid = np.sort(np.concatenate([xs[:, j], ys[:, j]]))
        fx = np.searchsorted(xs[:, j], grid[:-1], side="right") / xs.shape[0]
        fy = np.searchsorted(ys[:, j], grid[:-1], side="right") / ys.shape[0]
        out[j] = float(np.sum(np.abs(fx - fy) * np.diff(grid)))
    return out


def ks_columns(x: ArrayLike, y: ArrayLike) -> tuple[F64, F64, str]:
    """Return the two-sample Kolmogorov–Smirnov statistic and p-value of each column.

    ``scipy.stats.ks_2samp`` with ``method="auto"``: exact p-values when both samples have
    at most 10 000 rows, else the asymptotic distribution. Returns (statistic, pvalue,
    method in words).
    """
    from scipy.stats import ks_2samp

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    exact = max(xa.shape[0], ya.shape[0]) <= 10_000
    with warnings.catch_warnings():
        # scipy falls back to the asymptotic p-value when the exact one fails, as we would
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        res = ks_2samp(xa, ya, axis=0, method="auto")
    how = "two-sample Kolmogorov-Smirnov (scipy ks_2samp), "
    how += "exact p-values" if exact else "asymptotic p-values"
    return np.atleast_1d(res.statistic).astype(float), np.atleast_1d(res.pvalue).astype(float), how


def scale_columns(
    x: ArrayLike, y: ArrayLike, *, design_effect: ArrayLike | None = None
) -> tuple[F64, F64, str]:
    """Return the Brown–Forsythe test of equal spread of each column of two samples.

    Levene's test with the median as centre [1]_ [2]_, as ``scipy.stats.levene(x_j, y_j,
    center="median")``, vectorised over columns: with z = |x − median(x)| in each sample,
    W = (N − 2) Σ_i n_i (z̄_i − z̄)² / Σ_i Σ_k (z_ik − z̄_i)², referred to F(1, N − 2).
    Robust to non-normality (its size holds for heavy-tailed and skewed data, unlike the
    F test of variances) and, for a rescaling of one dimension, far more powerful than the
    Kolmogorov–Smirnov test, whose statistic barely moves at the median. Returns
    (statistic W, pvalue, method in words).

    ``design_effect`` (per column, ≥ 1) is for rows that are not independent (positions of
    conv latents): W, a squared z for two groups, is divided by it, the variance inflation
    of the group means of |x − median| (Kish's design effect; for conv latents the report's
    ``spatial.design_effect_var``, the inflation of variance estimates, stands in for it).

    References
    ----------
    .. [1] Levene, H. (1960). Robust tests for equality of variances. In Contributions to
       Probability and Statistics, Stanford University Press, 278-292.
    .. [2] Brown, M. B., Forsythe, A. B. (1974). Robust tests for the equality of
       variances. J. Amer. Statist. Assoc. 69(346), 364-367. :doi:`10.2307/2285659`
    """
    from scipy.stats import f as f_dist

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    n0, n1 = xa.shape[0], ya.shape[0]
    z0 = np.abs(xa - np.median(xa, axis=0))
    z1 = np.abs(ya - np.median(ya, axis=0))
    m0, m1 = z0.mean(axis=0), z1.mean(axis=0)
    grand = (n0 * m0 + n1 * m1) / (n0 + n1)
    between = n0 * (m0 - grand) ** 2 + n1 * (m1 - grand) ** 2
    within = ((z0 - m0) ** 2).sum(axis=0) + ((z1 - m1) ** 2).sum(axis=0)
    dof = n0 + n1 - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = dof * between / within
    w = np.where((within == 0) & (between == 0), np.nan, w)
    how = "Brown-Forsythe (Levene, median-centred; F(1, N - 2))"
    if design_effect is not None:
        deff = np.maximum(np.asarray(design_effect, dtype=np.float64), 1.0)
        w = w / np.where(np.isfinite(deff), deff, 1.0)
        how += ", W divided by the rows' design effect"
    p = f_dist.sf(w, 1, dof)
    return w, p, how


def moment_tests(
    n: tuple[int, int],
    mean: tuple[F64, F64],
    std: tuple[F64, F64],
    excess_kurtosis: tuple[F64, F64],
) -> tuple[F64, F64, F64, F64]:
    """Return large-sample z-tests of equal means and equal stds from two sets of moments.

    Parameters
    ----------
    n : (int, int)
        Rows of each data set.
    mean, std, excess_kurtosis : (ndarray, ndarray), each of shape (n_dims,)
        Per-dimension moments of each data set (std with ddof 0).

    Returns
    -------
    z_mean, p_mean, z_std, p_std : ndarray of shape (n_dims,)
        Two-sided p-values from N(0, 1).

    Notes
    -----
    z_mean = (m₁ − m₀) / √(s₀²/n₀ + s₁²/n₁) (Welch's statistic, normal reference);
    z_std = ln(s₁/s₀) / √((g2₀ + 2)/(4n₀) + (g2₁ + 2)/(4n₁)), from Var(ln s²) ≈ (κ − 1)/n
    with κ = g2 + 3 the kurtosis: the kurtosis-corrected test of equal variances of [1]_
    with each sample's own kurtosis.

    References
    ----------
    .. [1] Layard, M. W. J. (1973). Robust large-sample tests for homogeneity of
       variances. JASA 68(341), 195-198. :doi:`10.1080/01621459.1973.10481364`
    """
    from scipy.special import ndtr

    n0, n1 = n
    with np.errstate(divide="ignore", invalid="ignore"):
        z_mean = (mean[1] - mean[0]) / np.sqrt(std[0] ** 2 / n0 + std[1] ** 2 / n1)
        # g2 + 2 >= 0 always; the floor keeps two-point distributions finite
        var_log = np.maximum(excess_kurtosis[0] + 2.0, 1e-12) / (4.0 * n0)
        var_log = var_log + np.maximum(excess_kurtosis[1] + 2.0, 1e-12) / (4.0 * n1)
        z_std = np.log(std[1] / std[0]) / np.sqrt(var_log)
    return z_mean, 2.0 * ndtr(-np.abs(z_mean)), z_std, 2.0 * ndtr(-np.abs(z_std))


def global_tests(base: Normalization, other: Normalization) -> dict[str, TestResult]:
    """Return z-tests of equal global shift and equal global scale of two data sets.

    The standard errors come back from the reports' 95% intervals (normal approximation):
    se(shift) = half-width / 1.96; se(ln std) from the upper end of the interval of the
    global std 1/scale, by the delta method. Effect sizes: the shift difference over the
    pooled global std, and ln(std / std of the baseline).
    """
    from scipy.special import ndtr

    se0 = (base.shift_ci[1] - base.shift_ci[0]) / (2 * Z975)
    se1 = (other.shift_ci[1] - other.shift_ci[0]) / (2 * Z975)
    sd0, sd1 = 1.0 / base.scale, 1.0 / other.scale
    pooled = math.sqrt((sd0**2 + sd1**2) / 2.0)
    diff = other.shift - base.shift
    se = math.hypot(se0, se1)
    z = diff / se if se > 0 else math.nan
    out = {
        "shift": TestResult(
            statistic=z,
            pvalue=float(2.0 * ndtr(-abs(z))),
            effect_size=diff / pooled if pooled > 0 else math.nan,
            method="z-test of equal global means from the reports' 95% intervals; effect "
            "size: difference over the pooled global std",
        )
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        sl0 = (1.0 / base.scale_ci[0] - sd0) / Z975 / sd0
        sl1 = (1.0 / other.scale_ci[0] - sd1) / Z975 / sd1
    ratio = math.log(sd1 / sd0) if sd0 > 0 and sd1 > 0 else math.nan
    se = math.hypot(sl0, sl1)
    z = ratio / se if se > 0 else math.nan
    out["scale"] = TestResult(
        statistic=z,
        pvalue=float(2.0 * ndtr(-abs(z))),
        effect_size=ratio,
        method="z-test of equal global std (1/scale) from the reports' 95% intervals; "
        "effect size: ln(std / std of the baseline)",
    )
    return out


def energy_two_sample(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_permutations: int = 199,
    seed: int | Sequence[int] | None = None,
    standardize: bool = True,
    block_size: int = 512,
) -> TestResult:
    """Two-sample energy test of equal distributions with a seeded permutation p-value.

    Parameters
    ----------
    x : array_like of shape (n_x, n_dims)
    y : array_like of shape (n_y, n_dims)
    n_permutations : int, default=199
        Random relabellings of the pooled rows; 0 gives the statistic and a NaN p-value.
    seed : int, sequence of int or None, default=None
        Seed of ``np.random.default_rng`` for the relabellings.
    standardize : bool, default=True
        Divide each dimension by its pooled std first (dimensions of zero pooled variance
        are left out), so that every dimension weighs the same. The pooled std does not
        depend on the labels, so the permutation test stays exact.
    block_size : int, default=512
        Rows per block of pairwise distances: memory O(block_size · (n_x + n_y)).

    Returns
    -------
    TestResult
        Statistic E (energy distance, V-statistic form), permutation p-value, effect size
        E / (2 mean|x − y|) in [0, 1] (Rizzo & Székely's H).

    Notes
    -----
    E = 2/(n_x n_y) Σ|x_i − y_j| − 1/n_x² Σ|x_i − x_j| − 1/n_y² Σ|y_i − y_j| [1]_; in one
    dimension E is the square of ``scipy.stats.energy_distance``. With s the 0/1 label
    vector of x and D the distance matrix of the pooled rows, Σ_xx = sᵀDs,
    Σ_xy = sᵀD1 − sᵀDs and Σ_yy = 1ᵀD1 − Σ_xx − 2Σ_xy, so every relabelling is one column
    of D·S, accumulated block by block without storing D. The p-value is
    (1 + #{E* ≥ E}) / (R + 1) (Davison & Hinkley 1997, eq. 4.11).

    References
    ----------
    .. [1] Székely, G. J., Rizzo, M. L. (2013). Energy statistics: a class of statistics
       based on distances. J. Stat. Plan. Inference 143(8), 1249-1272.
       :doi:`10.1016/j.jspi.2013.03.018`
    .. [2] Rizzo, M. L., Székely, G. J. (2016). Energy distance. WIREs Comput. Stat. 8(1),
       27-38. :doi:`10.1002/wics.1375`
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 2 or ya.ndim != 2 or xa.shape[1] != ya.shape[1]:
        raise InputError(
            f"`x` and `y` must be 2-D with the same number of columns, got shapes "
            f"{xa.shape} and {ya.shape}"
        )
    n_permutations = v.check_int(n_permutations, "n_permutations", minimum=0)
    block_size = v.check_int(block_size, "block_size", minimum=1)
    n1, n2 = xa.shape[0], ya.shape[0]
    if min(n1, n2) < 2:
        msg = f"The energy test needs at least 2 rows per sample, got {n1} and {n2}"
        warnings.warn(msg, SmallSampleWarning, stacklevel=2)
        return TestResult.skipped(msg)
    z = np.vstack([xa, ya])
    z -= z.mean(axis=0)  # distances are translation invariant; centring limits rounding
    if standardize:
        sd = z.std(axis=0)
        if not (sd > 0).any():
            return TestResult.skipped("every dimension has zero pooled variance")
        z = z[:, sd > 0] / sd[sd > 0]
    n = n1 + n2
    sq = np.einsum("ij,ij->i", z, z)
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_permutations + 1, n))
    labels[:, :n1] = 1.0
    labels[1:] = rng.permuted(labels[1:], axis=1)
    s = np.ascontiguousarray(labels.T)
    quad = np.zeros(n_permutations + 1)
    rowsum = np.empty(n)
    for a in range(0, n, block_size):
        b = min(a + block_size, n)
        # |z_i − z_j|² = |z_i|² + |z_j|² − 2 z_iᵀz_j from one BLAS product
        g = z[a:b] @ z.T
        g *= -2.0
        g += sq[a:b, None]
        g += sq[None, :]
        np.maximum(g, 0.0, out=g)
        np.sqrt(g, out=g)
        g[np.arange(b - a), np.arange(a, b)] = 0.0
        rowsum[a:b] = g.sum(axis=1)
        quad += np.einsum("ip,ip->p", s[a:b], g @ s)
    total = float(rowsum.sum())
    cross = s.T @ rowsum - quad
    within_y = total - quad - 2.0 * cross
    e = 2.0 * cross / (n1 * n2) - quad / n1**2 - within_y / n2**2
    stat = float(e[0])
    mean_xy = float(cross[0]) / (n1 * n2)
    pvalue = math.nan
    if n_permutations:
        # a relabelling that reproduces the observed split must tie despite rounding
        tol = 1e-10 * total / n**2
        pvalue = (1.0 + float(np.sum(e[1:] >= stat - tol))) / (n_permutations + 1.0)
    what = "energy distance of rows standardised by the pooled std" if standardize else ""
    return TestResult(
        statistic=stat,
        pvalue=pvalue,
        effect_size=stat / (2.0 * mean_xy) if mean_xy > 0 else math.nan,
        method=(what or "energy distance")
        + f"; permutation p-value (1 + #{{E* >= E}}) / (R + 1), R = {n_permutations}",
    )
