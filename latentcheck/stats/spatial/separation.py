"""Effective sample size and well-separated positions of conv latents.

From per-channel lag-1 autocorrelations along each spatial axis (a separable AR(1) model),
the variance inflation of a per-channel mean, the effective sample size, the per-axis stride
at which positions are nearly independent, and the rows at those positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import InputError
from ...validation import check_fraction, check_int
from .accumulator import check_spatial_shape

__all__ = [
    "SEPARATION_THRESHOLD",
    "effective_sample_size",
    "separated_rows",
    "separation_gap",
    "variance_inflation",
    "well_separated_positions",
]

F64 = NDArray[np.float64]

#: Default correlation below which two positions count as nearly independent.
SEPARATION_THRESHOLD = 0.05


def _axis_inflation(rho: F64, length: int) -> F64:
    """Return (1/L) Σ_{s,t<L} ρ^|s−t| = 1 + 2 Σ_{k<L} (1 − k/L) ρ^k, elementwise in ρ."""
    if length <= 1:
        return np.ones_like(rho)
    lags = np.arange(1, length, dtype=np.float64)
    weights = 1.0 - lags / length
    # the direct sum has no cancellation near ρ = 1, where the closed form has
    powers = np.power(rho[..., None], lags)
    return np.asarray(1.0 + 2.0 * (powers @ weights), dtype=np.float64)


def variance_inflation(spatial_shape: Sequence[int], rho: ArrayLike) -> F64:
    """Return the variance inflation factor of a grid mean under a separable AR(1) model.

    Parameters
    ----------
    spatial_shape : sequence of int
        Grid shape (L_1, ..., L_k).
    rho : array_like of shape (k,) or (k, n_channels)
        Lag-1 correlation along each axis (clipped to [−1, 1]; NaN counts as 0).

    Returns
    -------
    ndarray of shape () or (n_channels,)
        ``Var(grid mean) · Π L_a / σ²``; 1 for independent positions.

    Notes
    -----
    For a stationary field with separable correlation ``Corr(x_p, x_q) = Π_a ρ_a^|p_a − q_a|``
    (a product of AR(1) correlations, one per axis), the variance of the mean of the
    L_1 × ... × L_k grid is σ²/Π L_a times ``Π_a f(ρ_a, L_a)`` with

        f(ρ, L) = (1/L) Σ_{s,t} ρ^|s−t| = (1 + ρ)/(1 − ρ) − 2ρ(1 − ρ^L) / (L (1 − ρ)²),

    the finite-length factor of Bayley & Hammersley (1946). The double sum factorises
    over axes because the correlation does. Computed as 1 + 2 Σ_{k<L} (1 − k/L) ρ^k, which is
    exact also at ρ = 1 (f = L). Negative ρ gives f < 1.

    References
    ----------
    .. [1] G. V. Bayley and J. M. Hammersley, "The 'effective' number of independent
       observations in an autocorrelated time series", Supplement to the Journal of the
       Royal Statistical Society 8(2), 184-197, 1946.
    .. [2] R. J. Martin, "A subclass of lattice processes applied to a problem in planar
       sampling", Biometrika 66(2), 209-217, 1979 (separable, "doubly geometric" AR(1)
       lattice processes).
    """
    shape = check_spatial_shape(spatial_shape)
    r = np.asarray(rho, dtype=np.float64)
    if r.shape[:1] != (len(shape),):
        raise InputError(
            f"`rho` must have one row per spatial axis ({len(shape)}), got shape {r.shape}"
        )
    r = np.clip(np.nan_to_num(r, nan=0.0), -1.0, 1.0)
    out = np.ones(r.shape[1:])
    for a, length in enumerate(shape):
        out = out * _axis_inflation(r[a], length)
    return out


def effective_sample_size(n_items: int, spatial_shape: Sequence[int], rho: ArrayLike) -> F64:
    """Return the effective number of independent rows for the per-channel mean.

    Parameters
    ----------
    n_items : int
        Independent samples (each a grid of positions).
    spatial_shape : sequence of int
        Grid shape (H, W) (any number of axes).
    rho : array_like of shape (n_axes,) or (n_axes, n_channels)
        Lag-1 autocorrelation along each spatial axis.

    Returns
    -------
    ndarray of shape () or (n_channels,)
        ``n_items · Π L_a / VIF`` with VIF from :func:`variance_inflation`: the number of
        independent rows whose mean would have the same variance.

    Notes
    -----
    Assumes independent samples and, within a sample, the separable AR(1) correlation of
    :func:`variance_inflation` (Bayley & Hammersley 1946). Then Var(mean over all rows) =
    σ² · VIF / (n_items · Π L_a). Standard errors computed as if all rows were independent
    should be multiplied by √VIF. For the variance of a Gaussian field, use ρ² in place of ρ
    (Corr(x_p², x_q²) = Corr(x_p, x_q)² for jointly Gaussian, centred values).

    Examples
    --------
    >>> from latentcheck.stats.spatial.correlation import effective_sample_size
    >>> float(effective_sample_size(10, (32, 32), [0.0, 0.0]))
    10240.0
    """
    n = check_int(n_items, "n_items", minimum=0)
    shape = check_spatial_shape(spatial_shape)
    return np.asarray(n * math.prod(shape) / variance_inflation(shape, rho), dtype=np.float64)


def separation_gap(
    rho: ArrayLike,
    spatial_shape: Sequence[int],
    *,
    threshold: float = SEPARATION_THRESHOLD,
    max_gap: int | None = None,
) -> tuple[int, ...]:
    """Return, per axis, the smallest gap g with |ρ|^g < `threshold` (capped).

    Parameters
    ----------
    rho : array_like of shape (n_axes,) or (n_axes, n_channels)
        Lag-1 autocorrelations; the largest |ρ| over channels decides each axis.
    spatial_shape : sequence of int
        Grid shape; the gap along an axis is capped at its length (one position).
    threshold : float, default=0.05
        Largest correlation tolerated between two chosen positions.
    max_gap : int or None, default=None
        Further cap on every gap.

    Returns
    -------
    tuple of int
        One gap per axis, each at least 1.

    Notes
    -----
    Under the separable AR(1) model (see :func:`variance_inflation`) two positions that
    differ by at least g_a along some axis a have |correlation| ≤ |ρ_a|^g_a < threshold. An
    axis whose ρ is NaN (a length-1 axis, or no data) gets gap 1. A capped gap may leave
    correlation above `threshold`; the cap at the axis length never does, since then one
    position per sample remains along that axis.
    """
    shape = check_spatial_shape(spatial_shape)
    thr = check_fraction(threshold, "threshold")
    cap = None if max_gap is None else check_int(max_gap, "max_gap", minimum=1)
    r = np.abs(np.asarray(rho, dtype=np.float64)).reshape(len(shape), -1)
    gaps = []
    for a, length in enumerate(shape):
        finite = r[a][np.isfinite(r[a])]
        worst = float(finite.max()) if finite.size else 0.0
        limit = length if cap is None else min(length, cap)
        if worst < thr:
            gap = 1
        elif worst >= 1.0:
            gap = limit
        else:
            gap = max(1, math.ceil(math.log(thr) / math.log(worst)))
            if worst**gap >= thr:
                gap += 1
        gaps.append(max(1, min(gap, limit)))
    return tuple(gaps)


def well_separated_positions(
    spatial_shape: Sequence[int], min_gap: int | Sequence[int]
) -> NDArray[np.intp]:
    """Return flat indices of grid positions at least `min_gap` apart.

    Parameters
    ----------
    spatial_shape : sequence of int
        Grid shape (H, W) (any number of axes).
    min_gap : int or sequence of int
        Stride per axis (one int for all axes).

    Returns
    -------
    ndarray of int of shape (n_chosen,)
        C-order flat indices into the grid (``np.ravel_multi_index``), ascending.

    Notes
    -----
    The positions form a stride grid, centred so that the margins at both ends of each
    axis differ by at most one. Two distinct chosen positions differ by a multiple of the
    stride along at least one axis, so they are at least `min_gap` apart along that axis
    (Chebyshev distance ≥ min_gap).

    Examples
    --------
    >>> from latentcheck.stats.spatial.correlation import well_separated_positions
    >>> well_separated_positions((4, 4), 2).tolist()
    [0, 2, 8, 10]
    """
    shape = check_spatial_shape(spatial_shape)
    if isinstance(min_gap, (int, np.integer)) and not isinstance(min_gap, bool):
        gaps = (int(min_gap),) * len(shape)
    else:
        gaps = tuple(min_gap)  # type: ignore[arg-type]
    if len(gaps) != len(shape):
        raise InputError(
            f"`min_gap` must be one integer or one per spatial axis ({len(shape)}), got {min_gap!r}"
        )
    gaps = tuple(check_int(g, "min_gap", minimum=1) for g in gaps)
    axes = []
    for length, gap in zip(shape, gaps, strict=True):
        count = (length - 1) // gap + 1
        offset = (length - 1 - gap * (count - 1)) // 2
        axes.append(offset + gap * np.arange(count))
    grid = np.meshgrid(*axes, indexing="ij")
    return np.sort(np.ravel_multi_index(tuple(g.ravel() for g in grid), shape)).astype(np.intp)


def separated_rows(
    row_ids: NDArray[np.int64], n_positions: int, positions: NDArray[np.intp]
) -> NDArray[np.bool_]:
    """Return a mask of the rows that lie at one of `positions` of their sample.

    Parameters
    ----------
    row_ids : ndarray of int of shape (n_rows,)
        Global row indices in LatentSource layout (row = item · n_positions + position).
    n_positions : int
        Positions per sample.
    positions : ndarray of int
        Flat position indices, e.g. from :func:`well_separated_positions`.
    """
    return np.isin(np.asarray(row_ids) % n_positions, positions)
