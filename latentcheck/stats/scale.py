"""Scale, spectrum and normalisation statistics from the accumulated moments.

Covariance spectrum, effective dimensionality, condition number, the most correlated pairs,
the Gaussian total correlation and the joint Gaussian-fit KL to N(0, I) with its exact split
into per-dimension moment-matched KL plus total correlation; the normalisation constants
that latent diffusion models use; and the per-dimension median absolute deviation, a robust
scale on the seeded sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..model.base import Normalization

__all__ = [
    "JointGaussian",
    "Normalization",
    "degenerate_dims",
    "joint_gaussian",
    "median_abs_deviation_sorted",
    "normalization",
    "pooled_sq_var_from_sample",
    "top_correlated_pairs",
]

F64 = NDArray[np.float64]

#: A dimension whose std is below this fraction of the largest std is "near-zero variance":
#: its variance is then below 1e-16 of the largest, which float64 cannot tell from 0.
DEGENERATE_RTOL = 1e-8
Z975 = 1.959963984540054  # Φ⁻¹(0.975)
#: Φ⁻¹(3/4): the MAD of N(0, σ²) is σ·Φ⁻¹(3/4), so MAD / Φ⁻¹(3/4) estimates σ
#: (``scipy.special.ndtri(0.75)``, the constant of scipy's ``scale="normal"``).
Z75 = 0.6744897501960817


def median_abs_deviation_sorted(
    sorted_x: NDArray[np.generic], degenerate: NDArray[np.bool_]
) -> F64:
    """Return the per-dimension median absolute deviation, scaled to estimate a normal std.

    MAD_j = median_i |x_ij − median_i x_ij| / Φ⁻¹(3/4) (Hampel 1974; Rousseeuw & Croux
    1993): about 1.4826 × the raw MAD, consistent for σ at the normal, with a 50% breakdown
    point where the std has none. Equal to ``scipy.stats.median_abs_deviation(x, axis=0,
    scale="normal")`` (medians as ``np.median``: the mean of the two middle values).

    Parameters
    ----------
    sorted_x : ndarray of shape (n_samples, n_dims)
        Each column sorted ascending (any float dtype; each column is widened to float64 on
        its own, so no float64 copy of the whole array is made).
    degenerate : ndarray of bool of shape (n_dims,)
        Dimensions with zero or near-zero variance: NaN there.

    Returns
    -------
    ndarray of shape (n_dims,)

    References
    ----------
    F. R. Hampel, "The influence curve and its role in robust estimation", JASA 69 (1974)
    383–393. P. J. Rousseeuw and C. Croux, "Alternatives to the median absolute deviation",
    JASA 88 (1993) 1273–1283.
    """
    n, d = sorted_x.shape
    out = np.full(d, np.nan)
    if n == 0:
        return out
    lo, hi = (n - 1) // 2, n // 2
    for j in np.flatnonzero(~np.asarray(degenerate, dtype=bool)):
        col = np.asarray(sorted_x[:, j], dtype=np.float64)
        med = (col[lo] + col[hi]) / 2.0
        dev = np.abs(col - med)
        out[j] = (_kth_deviation(dev, lo) + _kth_deviation(dev, hi)) / 2.0 / Z75
    return out


def _kth_deviation(dev: F64, k: int) -> float:
    """Return the k-th smallest (from 0) of `dev` = |x − c| for a sorted x, without a sort.

    The k + 1 values of x nearest c are k + 1 consecutive ones, and the largest deviation
    in a run of consecutive values is at one of its ends, so the k-th smallest deviation is
    min over a of max(dev[a], dev[a + k]): two vector operations instead of a partition.
    """
    n = dev.shape[0]
    return float(np.min(np.maximum(dev[: n - k], dev[k:])))


def degenerate_dims(std: F64, mean: F64) -> NDArray[np.bool_]:
    """Return a mask of dimensions with zero or near-zero variance.

    A dimension is degenerate when its standard deviation is 0, or below
    ``DEGENERATE_RTOL`` times the largest standard deviation, or below 1e-12 of its own
    magnitude (then its values are one number up to rounding).
    """
    std = np.asarray(std, dtype=np.float64)
    top = float(np.nanmax(std)) if std.size else 0.0
    scale = np.maximum(np.abs(mean), 1.0)
    return ~(std > 0) | (std < DEGENERATE_RTOL * top) | (std < 1e-12 * scale)


@dataclass(frozen=True, slots=True)
class JointGaussian:
    """Second-order joint statistics of the dimensions used jointly.

    Attributes
    ----------
    eigenvalues : ndarray of shape (n_used,)
        Eigenvalues of the covariance matrix (ddof=0), descending.
    effective_dims : float
        Participation ratio (Σλ)² / Σλ² of the eigenvalues (Gao et al. 2017).
    condition_number : float
        Largest over smallest eigenvalue (inf if the smallest is not positive).
    total_correlation : float
        Gaussian total correlation −½ ln det R of the correlation matrix R (nats).
    kl_gauss : float
        KL(N(m, S) ‖ N(0, I)) = ½(mᵀm + tr S − d − ln det S) (nats).
    kl_gauss_dims : float
        Σ_j ½(m_j² + s_j² − 1 − ln s_j²), so that kl_gauss = kl_gauss_dims + total_correlation.
    top_pairs : tuple of (int, int, float)
        The most correlated pairs (i, j, r), by |r|, indices into the original dimensions.
    """

    eigenvalues: F64
    effective_dims: float
    condition_number: float
    total_correlation: float
    kl_gauss: float
    kl_gauss_dims: float
    top_pairs: tuple[tuple[int, int, float], ...]


def _logdet(a: F64) -> float:
    """Return ln det of a symmetric positive definite matrix (−inf if it is not)."""
    sign, logdet = np.linalg.slogdet(a)
    return float(logdet) if sign > 0 else -math.inf


def top_correlated_pairs(
    corr: F64, index: NDArray[np.intp], k: int = 10
) -> tuple[tuple[int, int, float], ...]:
    """Return the `k` pairs (i, j, r) with the largest |r|, i < j, as original indices."""
    d = corr.shape[0]
    if d < 2 or k <= 0:
        return ()
    iu, ju = np.triu_indices(d, 1)
    r = corr[iu, ju]
    k = min(k, r.size)
    top = np.argpartition(-np.abs(r), k - 1)[:k]
    top = top[np.lexsort((iu[top], -np.abs(r[top])))]
    return tuple((int(index[iu[t]]), int(index[ju[t]]), float(r[t])) for t in top)


def joint_gaussian(
    mean: F64, cov: F64, index: NDArray[np.intp], *, top_pairs: int = 10
) -> JointGaussian:
    """Return the joint second-order statistics of dimensions `index`.

    Parameters
    ----------
    mean : ndarray of shape (n_used,)
    cov : ndarray of shape (n_used, n_used)
        Population covariance (ddof=0) of the dimensions used.
    index : ndarray of int of shape (n_used,)
        Their indices among all dimensions (for the pairs).
    top_pairs : int, default=10

    Notes
    -----
    With R = D^{-1/2} S D^{-1/2} (D = diag S), ln det S = Σ ln s_j² + ln det R, hence
    KL(N(m, S) ‖ N(0, I)) = Σ_j KL(N(m_j, s_j²) ‖ N(0, 1)) − ½ ln det R: the joint KL splits
    exactly into the per-dimension moment-matched KL and the Gaussian total correlation
    (Watanabe 1960; for Gaussians TC = −½ ln det R).
    """
    d = mean.shape[0]
    var = np.diag(cov).copy()
    inv_sd = 1.0 / np.sqrt(var)
    corr = cov * inv_sd[:, None] * inv_sd[None, :]
    np.fill_diagonal(corr, 1.0)
    eig = np.linalg.eigvalsh(cov)[::-1].copy()
    total = float(eig.sum())
    eff = total**2 / float(np.sum(eig**2)) if total > 0 else math.nan
    lmin = float(eig[-1])
    cond = float(eig[0] / lmin) if lmin > 0 else math.inf
    tc = -0.5 * _logdet(corr)
    kl_dims = float(np.sum(0.5 * (mean**2 + var - 1.0 - np.log(var))))
    kl = kl_dims + tc
    del d
    return JointGaussian(
        eigenvalues=eig,
        effective_dims=eff,
        condition_number=cond,
        total_correlation=tc,
        kl_gauss=kl,
        kl_gauss_dims=kl_dims,
        top_pairs=top_correlated_pairs(corr, index, top_pairs),
    )


def normalization(
    n: int,
    mean: F64,
    m2: F64,
    m4: F64,
    *,
    cov_sum: float | None = None,
    pooled_sq_var: float | None = None,
    m3: F64 | None = None,
    cov: F64 | None = None,
) -> Normalization:
    """Return normalisation constants from per-dimension moments over `n` rows.

    Parameters
    ----------
    n : int
        Number of rows.
    mean, m2, m4 : ndarray of shape (n_dims,)
        Mean and central moment sums Σ(x − mean)², Σ(x − mean)⁴ per dimension.
    cov_sum : float or None
        1ᵀ S 1 for the population covariance S, which gives the exact standard error of the
        global mean; when None the dimensions are treated as independent.
    pooled_sq_var : float or None
        Variance over rows of the row-wise mean squared deviation from the global mean
        (from the sample, :func:`pooled_sq_var_from_sample`); gives the standard error of
        the global variance directly, whatever the dependence between dimensions. When
        None it comes from the moments (see Notes).
    m3 : ndarray of shape (n_dims,) or None
        Central third moment sums Σ(x − mean)³ (they matter when the dimensions' means
        differ); None counts them as 0.
    cov : ndarray of shape (n_dims, n_dims) or None
        Population covariance, for the covariance between dimensions in the standard error
        of the global variance; None treats the dimensions as independent.

    Notes
    -----
    Standard errors are the usual large-sample ones: se(m_j) = s_j/√n;
    se(s_j) = s_j √((g2_j + 2) / (4n)) by the delta method, with g2_j the excess kurtosis
    (Var s² ≈ (μ4 − σ⁴)/n). For the global mean, Var(M) = 1ᵀ S 1 / (n d²). Intervals for
    scales (1/std) map the std interval through 1/x. Rows are assumed independent; for
    conv latents neighbouring positions are correlated and the intervals are too narrow.

    The global variance V is the mean over rows of q_i = Σ_j (x_ij − c)² / d, c the global
    mean (whose estimation has no first-order effect: ∂V/∂c = 0), so Var(V) = Var(q)/n
    with Var(q) = Σ_jk Cov(u_j², u_k²) / d², u_j = x_j − c = y_j + a_j, a_j = m_j − c
    (delta method; Cramér 1946, §27.7). The diagonal terms are exact from the per-dim
    moments, μ4_j − σ_j⁴ + 4 a_j μ3_j + 4 a_j² σ_j²; the off-diagonal ones take their
    Gaussian form 2 S_jk² + 4 a_j a_k S_jk (Isserlis 1918), since the cross fourth moments
    are not accumulated. For d independent dimensions the standard error thus shrinks
    as 1/√(nd), not 1/√n. The Gaussian form misses the dependence of uncorrelated but
    dependent dimensions (e.g. a multivariate t, whose squares covary through the shared
    scale: coverage .39 at d = 64), so the analysis passes ``pooled_sq_var`` estimated on
    its sample rows (coverage .93 there).
    """
    d = mean.shape[0]
    var = m2 / n
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_scale = 1.0 / std
        kurt = (m4 / n) / (var * var) - 3.0
        se_std = std * np.sqrt(np.maximum(kurt + 2.0, 0.0) / (4.0 * n))
        se_mean = std / math.sqrt(n)
    shift = float(mean.mean())
    pooled_var = float(np.mean(var + (mean - shift) ** 2))
    pooled_std = math.sqrt(pooled_var)
    second = float(np.mean(var + mean**2))
    if cov_sum is None:
        cov_sum = float(var.sum()) if cov is None else float(np.sum(cov))
    se_shift = math.sqrt(max(cov_sum, 0.0) / (n * d * d))
    if pooled_sq_var is None:
        pooled_sq_var = _pooled_sq_var(n, mean - shift, var, m4, m3, cov)
    se_pvar = math.sqrt(max(pooled_sq_var, 0.0) / n)
    se_pstd = se_pvar / (2.0 * pooled_std) if pooled_std > 0 else math.nan
    lo_std = std - Z975 * se_std
    hi_std = std + Z975 * se_std
    with np.errstate(divide="ignore", invalid="ignore"):
        per_scale_ci = np.stack([1.0 / hi_std, np.where(lo_std > 0, 1.0 / lo_std, np.inf)], 1)
    lo_p, hi_p = pooled_std - Z975 * se_pstd, pooled_std + Z975 * se_pstd
    return Normalization(
        shift=shift,
        scale=1.0 / pooled_std if pooled_std > 0 else math.inf,
        scale_rms=1.0 / math.sqrt(second) if second > 0 else math.inf,
        per_dim_shift=mean.copy(),
        per_dim_scale=per_scale,
        shift_ci=(shift - Z975 * se_shift, shift + Z975 * se_shift),
        scale_ci=(1.0 / hi_p, 1.0 / lo_p if lo_p > 0 else math.inf),
        per_dim_shift_ci=np.stack([mean - Z975 * se_mean, mean + Z975 * se_mean], 1),
        per_dim_scale_ci=per_scale_ci,
        n_rows=n,
    )


def _pooled_sq_var(n: int, a: F64, var: F64, m4: F64, m3: F64 | None, cov: F64 | None) -> float:
    """Return Var(q), q = Σ_j (x_j − c)² / d, from moments (see :func:`normalization`)."""
    d = a.shape[0]
    mu3 = np.zeros(d) if m3 is None else m3 / n
    diag = m4 / n - var * var + 4.0 * a * mu3 + 4.0 * a * a * var
    total = float(np.sum(diag))
    if cov is not None and d > 1:
        off = np.array(cov, dtype=np.float64, copy=True)
        gauss = 2.0 * off * off + 4.0 * np.outer(a, a) * off
        np.fill_diagonal(gauss, 0.0)
        total += float(np.sum(gauss))
    return float(total / (d * d))


def pooled_sq_var_from_sample(
    sample: NDArray[np.floating], shift: float, *, block_rows: int = 65_536
) -> float | None:
    """Return the variance over rows of q_i = Σ_j (x_ij − shift)² / d (None if < 2 rows).

    The empirical Var(q) of :func:`normalization`'s delta method: it carries every
    covariance between the dimensions' squares, not only their Gaussian form. Computed in
    blocks of `block_rows` rows (float64), never as a copy of the whole sample.
    """
    m = int(sample.shape[0])
    if m < 2 or sample.shape[1] == 0:
        return None
    q = np.empty(m)
    for a in range(0, m, block_rows):
        block = np.asarray(sample[a : a + block_rows], dtype=np.float64) - shift
        q[a : a + block.shape[0]] = np.einsum("ij,ij->i", block, block) / sample.shape[1]
    return float(np.var(q))
