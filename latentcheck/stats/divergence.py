"""Per-dimension divergence of the aggregate posterior from the N(0, 1) prior.

Three figures per dimension j, in nats: ``kl_gauss``, the KL divergence of the moment-matched
Gaussian N(m, s²) to N(0, 1) (from the mean and std of all rows); ``negentropy``,
H(N(m, s²)) − H(q_j) ≥ 0, the non-Gaussian part, from a spacing estimate of the differential
entropy on a seeded sample of rows; and ``kl_marginal`` = ``kl_gauss`` + ``negentropy``, the
estimate of KL(q_j ‖ N(0, 1)). The two parts are exact: for any q with mean m and variance s²,
KL(q ‖ N(0, 1)) = KL(q ‖ N(m, s²)) + KL(N(m, s²) ‖ N(0, 1)), and KL(q ‖ N(m, s²)) is the
negentropy of q. The entropy estimator and its sample size live in
:mod:`latentcheck.stats.entropy`; its public names are importable from here too.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from latentcheck.errors import InputError
from latentcheck.stats.entropy import (
    DEFAULT_ENTROPY_SAMPLE_SIZE,
    ENTROPY_ESTIMATOR,
    ENTROPY_MEMORY_LIMIT,
    MIN_ENTROPY_SAMPLES,
    EstimatorDescription,
    differential_entropy,
    entropy_columns,
    entropy_sample_size,
    entropy_window,
    warn_flags,
)

__all__ = [
    "DEFAULT_ENTROPY_SAMPLE_SIZE",
    "ENTROPY_ESTIMATOR",
    "ENTROPY_MEMORY_LIMIT",
    "MIN_ENTROPY_SAMPLES",
    "EstimatorDescription",
    "differential_entropy",
    "entropy_sample_size",
    "entropy_window",
    "gaussian_entropy",
    "kl_gauss",
    "kl_marginal",
    "negentropy",
]

F64 = NDArray[np.float64]

_HALF_LOG_2PIE: Final[float] = 0.5 * math.log(2.0 * math.pi * math.e)


def kl_gauss(mean: ArrayLike, std: ArrayLike) -> F64:
    """KL divergence of the moment-matched Gaussian N(mean, std²) to N(0, 1), in nats.

    Parameters
    ----------
    mean : array_like of shape (n_dims,)
        Mean of each dimension.
    std : array_like of shape (n_dims,)
        Population standard deviation (ddof=0) of each dimension; non-negative.

    Returns
    -------
    ndarray of shape (n_dims,)
        ½(m² + s² − 1 − ln s²) for each dimension (broadcast of ``mean`` and ``std``):
        +inf where ``std`` is 0 (the limit; no warning, the caller decides whether a
        zero-variance dimension is reported) or where the value overflows float64, NaN
        where an input is NaN.

    Raises
    ------
    InputError
        If a standard deviation is negative.

    Notes
    -----
    KL(N(m, s²) ‖ N(0, 1)) = ½(m² + s² − 1 − ln s²). It is evaluated as
    ½m² + ½(eˣ − 1 − x) with x = 2 ln s, so that a tiny s gives −ln s instead of
    log(0) and a huge s overflows only when the value itself does; eˣ − 1 − x is summed as
    its Taylor series for |x| < ½, where the subtraction would lose digits, so the result has
    full relative precision also for s → 1.

    References
    ----------
    .. [1] Kullback, S. & Leibler, R. A. (1951). On information and sufficiency. Ann. Math.
       Statist. 22(1):79-86. https://doi.org/10.1214/aoms/1177729694
    """
    m = np.asarray(mean, dtype=np.float64)
    s = _nonnegative(std, "std")
    with np.errstate(divide="ignore", over="ignore"):
        x = 2.0 * np.log(s)
        half_m2 = 0.5 * np.square(m)
    return np.asarray(half_m2 + 0.5 * _expm1mx(x), dtype=np.float64)


def gaussian_entropy(std: ArrayLike) -> F64:
    """Differential entropy of N(m, std²), in nats.

    Parameters
    ----------
    std : array_like of shape (n_dims,)
        Standard deviation of each dimension; non-negative.

    Returns
    -------
    ndarray of shape (n_dims,)
        ½ ln(2πe) + ln s; −inf where ``std`` is 0.

    Raises
    ------
    InputError
        If a standard deviation is negative.

    Notes
    -----
    H(N(m, s²)) = ½ ln(2πe s²), the largest entropy of any law with variance s².

    References
    ----------
    .. [1] Cover, T. M. & Thomas, J. A. (2006). Elements of Information Theory, 2nd ed.,
       Theorem 8.6.5. https://doi.org/10.1002/047174882X
    """
    s = _nonnegative(std, "std")
    with np.errstate(divide="ignore"):
        return np.asarray(_HALF_LOG_2PIE + np.log(s), dtype=np.float64)


def negentropy(
    sample: ArrayLike,
    *,
    window: int | None = None,
    seed: int | None = 0,
    clip: bool = True,
) -> F64:
    """Negentropy H(N(m, s²)) − H(q_j) of each column of a sample, in nats.

    Parameters
    ----------
    sample : array_like of shape (n_samples, n_dims)
        Rows drawn from the distribution, e.g. the engine's seeded uniform sample of rows.
    window : int or None, default=None
        Spacing window of the entropy estimate; None picks ``entropy_window(n_samples)``.
    seed : int or None, default=0
        Seed of the jitter that breaks ties (see `differential_entropy`).
    clip : bool, default=True
        Clip the estimate at 0, the lower bound of the true value. ``False`` returns the raw
        estimate, which is negative on about half of Gaussian samples.

    Returns
    -------
    ndarray of shape (n_dims,)
        Negentropy estimates; NaN (with a warning) for constant columns and when there are
        fewer than ``MIN_ENTROPY_SAMPLES`` rows.

    Raises
    ------
    InputError
        As `differential_entropy`.

    Warns
    -----
    SmallSampleWarning, DegenerateDimensionWarning
        As `differential_entropy`.

    Notes
    -----
    J(q) = ½ ln(2πe s²) − Ĥ(q), s the std (ddof=0) of the sample itself and Ĥ the estimate
    of `differential_entropy`. Both terms move by ln|a| under x ↦ a x + b, so the estimate
    is affine invariant and a uniform subsample of rows estimates the negentropy of all
    rows. Using the sample's own s rather than the std of all rows cancels most of the
    sampling noise of Ĥ (kl_marginal error sd 0.0018 against 0.0030 nats for Laplace data,
    10⁵ of 10⁶ rows).

    On Gaussian data the raw estimate has mean −0.0002 and sd 0.0002-0.0003 nats at
    n = 10⁵, mean −0.0009 and sd 0.002 at n = 5000, mean −0.0011 and sd 0.006 at n = 1000.
    Clipping at 0 (the default) raises its mean on Gaussian data by about half its sd
    (< 0.0002 nats at n = 10⁵) and keeps ``kl_marginal`` ≥ ``kl_gauss``, as for the true
    values.

    References
    ----------
    .. [1] Comon, P. (1994). Independent component analysis, a new concept? Signal Process.
       36(3):287-314. https://doi.org/10.1016/0165-1684(94)90029-9
    .. [2] Vasicek, O. (1976). A test for normality based on sample entropy. J. R. Stat.
       Soc. B 38(1):54-59. https://doi.org/10.1111/j.2517-6161.1976.tb01566.x
    """
    h, var, flags = entropy_columns(sample, window, seed)
    warn_flags(flags, "negentropy is undefined (NaN)")
    with np.errstate(divide="ignore", invalid="ignore"):
        j = _HALF_LOG_2PIE + 0.5 * np.log(var) - h
    j[var == 0.0] = np.nan
    if clip:
        j = np.where(j < 0.0, 0.0, j)
    return np.asarray(j, dtype=np.float64)


def kl_marginal(
    mean: ArrayLike,
    std: ArrayLike,
    sample: ArrayLike,
    *,
    window: int | None = None,
    seed: int | None = 0,
) -> F64:
    """Estimate of KL(q_j ‖ N(0, 1)) for each dimension, in nats.

    Parameters
    ----------
    mean : array_like of shape (n_dims,)
        Mean of each dimension over all rows.
    std : array_like of shape (n_dims,)
        Population std (ddof=0) of each dimension over all rows.
    sample : array_like of shape (n_samples, n_dims)
        Seeded uniform sample of the rows, for the negentropy.
    window : int or None, default=None
        Spacing window of the entropy estimate; None picks ``entropy_window(n_samples)``.
    seed : int or None, default=0
        Seed of the jitter that breaks ties (see `differential_entropy`).

    Returns
    -------
    ndarray of shape (n_dims,)
        ``kl_gauss(mean, std) + negentropy(sample)`` (negentropy clipped at 0).

    Raises
    ------
    InputError
        As `kl_gauss` and `differential_entropy`.

    Warns
    -----
    SmallSampleWarning, DegenerateDimensionWarning
        As `differential_entropy`.

    Notes
    -----
    KL(q ‖ N(0, 1)) = KL(N(m, s²) ‖ N(0, 1)) + J(q): the cross-entropy of q against N(0, 1)
    depends on q only through m and s, so the remainder is the negentropy J. The ln s terms
    of the two parts cancel, so the error is that of ½(m² + s²) plus that of Ĥ.

    Worst absolute error (mean error) over 50 seeds at 10⁵ rows, the sample being all rows,
    against the ``scipy.integrate.quad`` truth:

    ========================  ===============  =========
    shape                     error            true KL
    ========================  ===============  =========
    U(−√3, √3)                0.003 (−0.000)   0.176
    U(1, 3)                   0.010 (−0.001)   2.392
    Laplace, variance 1       0.004 (+0.000)   0.072
    Laplace(1, 2)             0.053 (−0.003)   3.033
    t(5), variance 1          0.014 (−0.000)   0.047
    t(5)                      0.021 (+0.001)   0.125
    t(4), variance 1          0.020 (−0.001)   0.084
    t(3), variance 1          0.94 (+0.015)    0.195
    lognormal σ = 0.5         0.004 (−0.000)   1.018
    lognormal σ = 1           0.44 (+0.017)    3.195
    ±1.5, sd 0.5 mixture      0.006 (−0.001)   0.754
    ========================  ===============  =========

    The large errors are the sampling error of s², not of the estimator: for Laplace(1, 2)
    (s² = 8) its sd is 0.03 nats, and without a fourth moment (t(3), t(4)) or with a huge
    one (lognormal σ = 1, excess kurtosis 111) it is heavy-tailed; the entropy part of
    the same runs stays within 0.015 nats.

    References
    ----------
    .. [1] Cover, T. M. & Thomas, J. A. (2006). Elements of Information Theory, 2nd ed.,
       Chapter 8. https://doi.org/10.1002/047174882X
    """
    return np.asarray(
        kl_gauss(mean, std) + negentropy(sample, window=window, seed=seed), dtype=np.float64
    )


def _nonnegative(values: ArrayLike, name: str) -> F64:
    """Return ``values`` as float64, raising InputError if any is negative."""
    arr = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise InputError(
            f"`{name}` must be non-negative, got {float(arr.flat[bad[0]])} at index {bad[0]}"
        )
    return arr


# 1/(k+2)! for k = 0..15, highest first, for Horner's scheme (tail < 1e-17 relative at |x| ½).
_EXPM1MX_COEFFS: Final[tuple[float, ...]] = tuple(
    1.0 / math.factorial(k + 2) for k in reversed(range(16))
)


def _expm1mx(x: F64) -> F64:
    """Return eˣ − 1 − x, accurate near 0, +inf at x = ±inf."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 0.5
    xs = np.where(small, x, 0.0)
    series = np.zeros_like(xs)
    for c in _EXPM1MX_COEFFS:
        series = series * xs + c
    with np.errstate(over="ignore", invalid="ignore"):
        direct = np.expm1(x) - x
    out = np.where(small, xs * xs * series, direct)
    return np.asarray(np.where(np.isposinf(x), np.inf, out), dtype=np.float64)
