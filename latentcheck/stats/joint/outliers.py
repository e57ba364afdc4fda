"""Outlier statistics: Gaussian tail probabilities, Mahalanobis exceedances, robust MCD.

The one place to import them from. :func:`gaussian_tail` lives here;
:mod:`latentcheck.stats.joint.mahalanobis` holds :class:`MahalanobisAccumulator`, which
counts squared distances of all rows above chi2_d quantiles in the second pass, and
:mod:`latentcheck.stats.joint.mcd` the robust version on the seeded sample,
:func:`mcd_outliers`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.stats.joint.mahalanobis import (
    MAHALANOBIS_QUANTILES,
    MahalanobisAccumulator,
    MahalanobisOutliers,
    chi2_thresholds,
    mahalanobis_expected_rates,
)
from latentcheck.stats.joint.mcd import MCD_QUANTILE, McdOutliers, mcd_expected_rate, mcd_outliers

__all__ = [
    "MAHALANOBIS_QUANTILES",
    "MCD_QUANTILE",
    "MahalanobisAccumulator",
    "MahalanobisOutliers",
    "McdOutliers",
    "chi2_thresholds",
    "gaussian_tail",
    "mahalanobis_expected_rates",
    "mcd_expected_rate",
    "mcd_outliers",
]

FloatArray = NDArray[np.float64]


def gaussian_tail(k: npt.ArrayLike) -> FloatArray:
    """Two-sided Gaussian tail probability ``2 Phi(-k) = P(|Z| > k)``.

    Parameters
    ----------
    k : array_like
        Thresholds in standard deviations.

    Returns
    -------
    ndarray of float64
        Same shape as ``k``. Computed as ``erfc(k / sqrt(2))``: the rounding of
        ``k / sqrt(2)`` bounds the relative error by about ``k^2`` ulp (2e-13 at k = 30);
        the value enters the float64 subnormal range at k = 37.5 and is 0 beyond 38.5.

    Examples
    --------
    >>> from latentcheck.stats.joint.outliers import gaussian_tail
    >>> [f"{p:.4g}" for p in gaussian_tail([3, 4, 5, 6])]
    ['0.0027', '6.334e-05', '5.733e-07', '1.973e-09']
    """
    from scipy.special import erfc

    return np.asarray(erfc(np.asarray(k, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64)
