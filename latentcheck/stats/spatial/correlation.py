"""Spatial statistics of conv latents: autocorrelation, effective sample size, position maps.

Conv latents of shape (n_items, C, *spatial) give C dimensions and n_items · Π spatial rows,
but neighbouring positions of one sample are correlated, so those rows are not independent.
This module streams whole samples through a mergeable :class:`SpatialAccumulator` (per-position
mean and spread, per-position lag-1 cross-moments along each spatial axis, per-position outlier
counts) and turns it into per-channel lag-1 autocorrelations, an effective sample size for the
per-channel mean, a set of well-separated positions for tests on nearly independent rows, and
per-position maps (mean, std, outlier rate).

The accumulator lives in :mod:`latentcheck.stats.spatial.accumulator` and the effective
sample size and well-separated positions in :mod:`latentcheck.stats.spatial.separation`;
their public names are re-exported here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import DegenerateDimensionWarning, SmallSampleWarning
from ..scale import degenerate_dims
from .accumulator import MAP_LEVELS, SpatialAccumulator, pair_slices
from .separation import (
    SEPARATION_THRESHOLD,
    effective_sample_size,
    separated_rows,
    separation_gap,
    variance_inflation,
    well_separated_positions,
)

__all__ = [
    "MAP_LEVELS",
    "SEPARATION_THRESHOLD",
    "SpatialAccumulator",
    "SpatialStats",
    "effective_sample_size",
    "pair_slices",
    "separated_rows",
    "separation_gap",
    "spatial_statistics",
    "variance_inflation",
    "well_separated_positions",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SpatialStats:
    """Spatial statistics of conv latents.

    Attributes
    ----------
    spatial_shape : tuple of int
        Grid shape of one sample, e.g. (H, W).
    n_items : int
        Samples used.
    n_dropped_items : int
        Samples left out (non-finite values or incomplete rows).
    autocorrelation : ndarray of shape (n_axes, n_channels)
        Lag-1 autocorrelation along each spatial axis, about the channel mean over all rows:
        the mean cross-product of neighbours over the channel variance (ddof=0). NaN for an
        axis of length 1 or a degenerate channel. Used for the effective sample size.
    autocorrelation_pearson : ndarray of shape (n_axes, n_channels)
        Pearson correlation of the neighbour pairs (x_p, x_{p+e}) (each side about its own
        mean), as ``np.corrcoef`` of the shifted arrays gives.
    variance_inflation : ndarray of shape (n_channels,)
        Variance inflation factor of the per-channel mean (separable AR(1) model).
    effective_sample_size : ndarray of shape (n_channels,)
        n_items · n_positions / variance_inflation: independent rows worth of information.
    separation_gap : tuple of int
        Per-axis stride of the well-separated positions.
    separated_positions : ndarray of int of shape (n_separated,)
        Flat indices of positions whose pairwise correlation stays below the threshold.
    mean_map, std_map : ndarray of shape (n_channels, *spatial_shape)
        Per-position mean and standard deviation (ddof=0) over samples.
    outlier_levels : ndarray of shape (n_levels,)
        Sigma levels of `outlier_rate_map` (empty without channel mean/std).
    outlier_rate_map : ndarray of shape (n_levels, n_channels, *spatial_shape) or None
        Fraction of samples with |z − mean_c| > k · std_c at each position.
    """

    spatial_shape: tuple[int, ...]
    n_items: int
    n_dropped_items: int
    autocorrelation: F64
    autocorrelation_pearson: F64
    variance_inflation: F64
    effective_sample_size: F64
    separation_gap: tuple[int, ...]
    separated_positions: NDArray[np.intp]
    mean_map: F64
    std_map: F64
    outlier_levels: F64
    outlier_rate_map: F64 | None

    def to_jsonable(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (arrays as nested lists, NaN as None)."""
        from ...model.base import to_jsonable

        out: dict[str, Any] = to_jsonable(self)
        return out


def _channel_sums(a: F64) -> F64:
    """Return the sum over all but the first axis."""
    return np.asarray(a.reshape(a.shape[0], -1).sum(axis=1), dtype=np.float64)


def spatial_statistics(
    acc: SpatialAccumulator,
    *,
    threshold: float = SEPARATION_THRESHOLD,
    max_gap: int | None = None,
) -> SpatialStats:
    """Return autocorrelations, effective sample sizes and maps from a SpatialAccumulator.

    Parameters
    ----------
    acc : SpatialAccumulator
    threshold : float, default=0.05
        Correlation below which positions count as nearly independent
        (see :func:`separation_gap`).
    max_gap : int or None, default=None
        Cap on the separation gap.

    Returns
    -------
    SpatialStats

    Warns
    -----
    SmallSampleWarning
        When no sample was accumulated (every number is then NaN).
    DegenerateDimensionWarning
        For channels with zero or near-zero variance (their autocorrelation is NaN).

    Notes
    -----
    With per-position means m_p, sums of squares M2_p and neighbour cross-moments W_p over
    n samples, and the channel mean μ = mean_p m_p, the sum over all neighbour pairs
    (p, p + e) and samples is exactly

        Σ (x_p − μ)(x_{p+e} − μ) = Σ_p [W_p + n (m_p − μ)(m_{p+e} − μ)],

    and the channel sum of squares is Σ_p [M2_p + n (m_p − μ)²]. `autocorrelation` is the
    first divided by the number of pairs, over the second divided by the number of rows (the
    sample autocorrelation of a field, normalised per pair so that the edge does not bias
    it towards 0). `autocorrelation_pearson` centres each side of the pairs on its own mean,
    with the same identities about ā = mean_{p∈A} m_p and b̄ = mean_{p∈A} m_{p+e}. Both
    estimate ρ of a stationary field; a non-constant mean map adds to both.

    References
    ----------
    .. [1] G. E. P. Box, G. M. Jenkins and G. C. Reinsel, "Time Series Analysis: Forecasting
       and Control", 4th ed., Wiley, 2008, ch. 2 (the sample autocorrelation function).
    """
    c, shape = acc.n_channels, acc.spatial_shape
    k = len(shape)
    n = acc.n
    p = acc.n_positions
    nan_axes = np.full((k, c), np.nan)
    levels = acc.levels.copy()
    if n == 0:
        warnings.warn(
            "No complete finite sample was accumulated (0 items, "
            f"{acc.n_dropped} dropped); spatial statistics are NaN",
            SmallSampleWarning,
            stacklevel=2,
        )
        nan_map = np.full((c, *shape), np.nan)
        return SpatialStats(
            spatial_shape=shape,
            n_items=0,
            n_dropped_items=acc.n_dropped,
            autocorrelation=nan_axes,
            autocorrelation_pearson=nan_axes.copy(),
            variance_inflation=np.full(c, np.nan),
            effective_sample_size=np.full(c, np.nan),
            separation_gap=(1,) * k,
            separated_positions=np.arange(p, dtype=np.intp),
            mean_map=nan_map,
            std_map=nan_map.copy(),
            outlier_levels=levels,
            outlier_rate_map=None if acc.counts is None else np.full(acc.counts.shape, np.nan),
        )
    mean, m2 = acc.mean, acc.m2
    chan_mean = mean.reshape(c, -1).mean(axis=1)
    dev = mean - chan_mean.reshape((c,) + (1,) * k)
    chan_var = (_channel_sums(m2) + n * _channel_sums(dev * dev)) / (n * p)
    chan_var = np.maximum(chan_var, 0.0)
    degenerate = degenerate_dims(np.sqrt(chan_var), chan_mean)
    rho = nan_axes.copy()
    pearson = nan_axes.copy()
    for a, length in enumerate(shape):
        if length < 2:
            continue
        lo, hi = pair_slices(1 + a)
        w = _channel_sums(acc.cross[a][lo])
        n_pairs = n * p * (length - 1) / length
        da, db = dev[lo], dev[hi]
        with np.errstate(divide="ignore", invalid="ignore"):
            rho[a] = ((w + n * _channel_sums(da * db)) / n_pairs) / chan_var
            ea = mean[lo] - mean[lo].reshape(c, -1).mean(axis=1).reshape((c,) + (1,) * k)
            eb = mean[hi] - mean[hi].reshape(c, -1).mean(axis=1).reshape((c,) + (1,) * k)
            saa = _channel_sums(m2[lo]) + n * _channel_sums(ea * ea)
            sbb = _channel_sums(m2[hi]) + n * _channel_sums(eb * eb)
            sab = w + n * _channel_sums(ea * eb)
            pearson[a] = sab / np.sqrt(saa * sbb)
    if degenerate.any():
        idx = np.flatnonzero(degenerate)
        warnings.warn(
            f"{idx.size} channel(s) with zero or near-zero variance (channels "
            f"{idx[:10].tolist()}, std {np.sqrt(chan_var[idx[:10]]).tolist()}); their spatial "
            "autocorrelation and effective sample size are NaN",
            DegenerateDimensionWarning,
            stacklevel=2,
        )
        rho[:, degenerate] = np.nan
        pearson[:, degenerate] = np.nan
    vif = variance_inflation(shape, rho)
    ess = n * p / vif
    vif = np.where(degenerate, np.nan, vif)
    ess = np.where(degenerate, np.nan, ess)
    gap = separation_gap(rho, shape, threshold=threshold, max_gap=max_gap)
    rates = None
    if acc.counts is not None:
        rates = acc.counts / float(n)
    return SpatialStats(
        spatial_shape=shape,
        n_items=n,
        n_dropped_items=acc.n_dropped,
        autocorrelation=rho,
        autocorrelation_pearson=pearson,
        variance_inflation=vif,
        effective_sample_size=ess,
        separation_gap=gap,
        separated_positions=well_separated_positions(shape, gap),
        mean_map=mean.copy(),
        std_map=np.sqrt(np.maximum(m2, 0.0) / n),
        outlier_levels=levels,
        outlier_rate_map=rates,
    )
