"""Spatial statistics of conv latents: autocorrelation, effective sample size, position maps.

Conv latents of shape (n_items, C, *spatial) give C dimensions and n_items · Π spatial rows,
but neighbouring positions of one sample are correlated, so those rows are not independent.
This module streams whole samples through a mergeable :class:`SpatialAccumulator` (per-position
mean and spread, per-position lag-1 cross-moments along each spatial axis, per-position outlier
counts) and turns it into per-channel lag-1 autocorrelations, an effective sample size for the
per-channel mean, a set of well-separated positions for tests on nearly independent rows, and
per-position maps (mean, std, outlier rate).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...engine.kernels import exact_threshold
from ...errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from ...validation import check_fraction, check_int, check_levels
from ..scale import degenerate_dims

__all__ = [
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
State = dict[str, NDArray[Any]]

#: Default sigma levels of the per-position outlier maps.
MAP_LEVELS = (3.0, 4.0)
#: Default correlation below which two positions count as nearly independent.
SEPARATION_THRESHOLD = 0.05


def _check_spatial_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Return `spatial_shape` as a tuple of positive ints, or raise InputError."""
    try:
        shape = tuple(spatial_shape)
    except TypeError:
        raise InputError(
            f"`spatial_shape` must be a sequence of positive integers, got {spatial_shape!r}"
        ) from None
    if not shape:
        raise InputError("`spatial_shape` must have at least one axis, got ()")
    return tuple(check_int(s, "spatial_shape", minimum=1) for s in shape)


def pair_slices(axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Return index tuples selecting [:-1] and [1:] along array axis `axis`."""
    before = (slice(None),) * axis
    return (*before, slice(0, -1)), (*before, slice(1, None))


class SpatialAccumulator:
    """Mergeable per-position moments and lag-1 cross-moments of conv latents.

    Feeds on whole samples. For every position p = (c, h, w, ...) it keeps, over samples,
    the mean and the centred sum of squares ``M2_p = Σ_i (x_ip − mean_p)²``; for every spatial
    axis a and every position p with a successor p + e_a, the centred cross-moment
    ``W_ap = Σ_i (x_ip − mean_p)(x_i,p+e_a − mean_{p+e_a})``; and, when per-channel `mean` and
    `std` are given, counts of |x − mean_c| > k·std_c per position for each k in `levels`.

    Parameters
    ----------
    n_channels : int
        Number of channels C.
    spatial_shape : sequence of int
        Shape of the spatial grid of one sample, e.g. (H, W); 1-D and 3-D grids work too.
    mean, std : ndarray of shape (n_channels,) or None, default=None
        Per-channel centre and scale of the outlier maps (from a first pass). Both or neither.
    levels : sequence of float, default=(3, 4)
        Sigma levels of the outlier maps.

    Notes
    -----
    Within a block, sums are taken about the block's per-position mean computed in float64,
    so nothing cancels; blocks merge by the pairwise update of Chan, Golub & LeVeque (1979)
    for means and sums of squares, and its bivariate form for cross-moments,
    ``W = W_a + W_b + (n_a n_b / n) δ_p δ_{p+e}`` with δ the difference of the two
    per-position means (Pébay 2008, eq. 3.3). Everything the per-channel autocorrelation
    needs is then exact algebra on these maps (see :func:`spatial_statistics`), so the
    accumulator needs no first pass unless outlier maps are wanted.

    `push` takes blocks of shape (n, C, *spatial), or 2-D blocks of rows in the layout of
    :class:`latentcheck.io.latents.LatentSource` (item-major, positions in C order, channels
    last) with optional global `row_ids`; samples that hold a non-finite value, or whose rows
    are incomplete in a 2-D block, are left out and counted in `n_dropped`.

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
       algorithm for computing sample variances", Stanford report STAN-CS-79-773, 1979.
    .. [2] P. Pébay, "Formulas for robust, one-pass parallel computation of covariances and
       arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008.
       https://doi.org/10.2172/1028931
    """

    __slots__ = (
        "_thresholds",
        "center",
        "counts",
        "cross",
        "levels",
        "m2",
        "mean",
        "n",
        "n_channels",
        "n_dropped",
        "scale",
        "spatial_shape",
    )

    def __init__(
        self,
        n_channels: int,
        spatial_shape: Sequence[int],
        *,
        mean: ArrayLike | None = None,
        std: ArrayLike | None = None,
        levels: Sequence[float] = MAP_LEVELS,
    ) -> None:
        self.n_channels = check_int(n_channels, "n_channels", minimum=1)
        self.spatial_shape = _check_spatial_shape(spatial_shape)
        shape = (self.n_channels, *self.spatial_shape)
        k = len(self.spatial_shape)
        self.n = 0
        self.n_dropped = 0
        self.mean: F64 = np.zeros(shape)
        self.m2: F64 = np.zeros(shape)
        self.cross: F64 = np.zeros((k, *shape))
        if (mean is None) != (std is None):
            raise InputError("Give both `mean` and `std` for the outlier maps, or neither")
        self._thresholds: dict[
            str, tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]
        ] = {}
        if mean is None or std is None:
            self.levels: F64 = np.zeros(0)
            self.center: F64 | None = None
            self.scale: F64 | None = None
            self.counts: NDArray[np.int64] | None = None
            return
        self.levels = np.asarray(check_levels(levels, "levels"), dtype=np.float64)
        self.center = np.array(mean, dtype=np.float64).reshape(-1)
        self.scale = np.array(std, dtype=np.float64).reshape(-1)
        for name, arr in (("mean", self.center), ("std", self.scale)):
            if arr.shape != (self.n_channels,):
                raise InputError(
                    f"`{name}` must have shape ({self.n_channels},), one value per channel, "
                    f"got {arr.shape}"
                )
        self.counts = np.zeros((self.levels.size, *shape), dtype=np.int64)

    @property
    def n_positions(self) -> int:
        """Return the number of positions of one sample's grid."""
        return math.prod(self.spatial_shape)

    # -----------------------------------------------------------------------------------
    # push
    # -----------------------------------------------------------------------------------

    def push(self, block: ArrayLike, row_ids: NDArray[np.int64] | None = None) -> None:
        """Add whole samples.

        Parameters
        ----------
        block : ndarray of shape (n, C, *spatial) or (n · n_positions, C)
            Samples with channels on axis 1, or rows in LatentSource layout (channels last).
        row_ids : ndarray of int of shape (n_rows,) or None, default=None
            Global row indices of a 2-D block (as a second-pass accumulator receives them);
            samples with missing rows are skipped.
        """
        native, channels_last = self._as_items(np.asarray(block), row_ids)
        if native.shape[0] == 0:
            return
        sums = native.sum(axis=0, dtype=np.float64)
        if not np.isfinite(sums).all():
            native = self._drop_nonfinite(native)
            if native.shape[0] == 0:
                return
            sums = native.sum(axis=0, dtype=np.float64)
        self._push_items(native, channels_last, sums)

    def _as_items(
        self, block: NDArray[Any], row_ids: NDArray[np.int64] | None
    ) -> tuple[NDArray[Any], bool]:
        """Return (samples in their native layout, whether channels are last)."""
        c, s = self.n_channels, self.spatial_shape
        if block.ndim == 2:
            p = self.n_positions
            if block.shape[1] != c:
                raise InputError(
                    f"Expected rows of {c} channels, got a block of shape {block.shape}"
                )
            if row_ids is not None:
                block = self._complete_items(block, np.asarray(row_ids, dtype=np.int64))
            elif block.shape[0] % p:
                raise InputError(
                    f"A 2-D block must hold whole samples of {p} positions; got "
                    f"{block.shape[0]} rows, not a multiple of {p}"
                )
            return block.reshape(block.shape[0] // p, *s, c), True
        if block.shape[1:] != (c, *s):
            raise InputError(
                f"Expected blocks of shape (n, {c}, {', '.join(map(str, s))}), channels on "
                f"axis 1, got {block.shape}; move the channel axis with np.moveaxis"
            )
        return block, False

    def _complete_items(self, rows: NDArray[Any], row_ids: NDArray[np.int64]) -> NDArray[Any]:
        """Return the rows of the samples all of whose rows are present, in row order."""
        p = self.n_positions
        n = row_ids.shape[0]
        if n == 0:
            return rows[:0]
        first, last = int(row_ids[0]), int(row_ids[-1])
        if first % p == 0 and n % p == 0 and last - first + 1 == n:
            if n == 1 or bool(np.all(np.diff(row_ids) == 1)):
                return rows
        order = np.argsort(row_ids, kind="stable")
        rows, row_ids = rows[order], row_ids[order]
        items, counts = np.unique(row_ids // p, return_counts=True)
        self.n_dropped += int(np.count_nonzero(counts < p))
        keep = np.isin(row_ids // p, items[counts == p])
        return rows[keep]

    def _drop_nonfinite(self, native: NDArray[Any]) -> NDArray[Any]:
        """Return the samples without those holding NaN or ±inf (counted in n_dropped)."""
        n = native.shape[0]
        ok = np.isfinite(native).reshape(n, -1).all(axis=1)
        self.n_dropped += int(n - np.count_nonzero(ok))
        return np.asarray(native[ok])

    def _push_items(self, native: NDArray[Any], channels_last: bool, sums: F64) -> None:
        """Merge the moments of one block of finite samples (column sums `sums`) into self."""
        n = native.shape[0]
        k = len(self.spatial_shape)
        # float64 shift at the block's per-position mean: Σ(x − shift) is then zero to
        # rounding, so the centred sums below need no first-order correction
        shift = sums / n
        u = np.subtract(native, shift, dtype=np.float64)
        m2 = np.einsum("i...,i...->...", u, u)
        first = 1 if channels_last else 2
        cross = np.zeros((k, *shift.shape))
        for a in range(k):
            lo, hi = pair_slices(first + a)
            cross[a][lo[1:]] = np.einsum("i...,i...->...", u[lo], u[hi])
        counts = self._count_outliers(native, channels_last) if self.counts is not None else None
        if channels_last:
            shift = np.moveaxis(shift, -1, 0)
            m2 = np.moveaxis(m2, -1, 0)
            cross = np.moveaxis(cross, -1, 1)
        self._merge_in(n, shift, m2, cross, counts)

    def _thresholds_for(
        self, dtype: np.dtype[Any], channels_last: bool
    ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
        """Return (upper, lower, upper_0, lower_0) thresholds exact in `dtype`.

        The first two have shape (n_levels, C); the last two are the lowest level's laid out
        over one sample in the native layout, shape (C · n_positions,).
        """
        key = f"{dtype.str}{'L' if channels_last else 'F'}"
        cached = self._thresholds.get(key)
        if cached is None:
            assert self.center is not None and self.scale is not None
            hi = exact_threshold(self.center + self.levels[:, None] * self.scale, dtype, upper=True)
            lo = exact_threshold(
                self.center - self.levels[:, None] * self.scale, dtype, upper=False
            )
            p = self.n_positions
            # one threshold per element of a sample, so the comparison runs over long
            # contiguous rows instead of broadcasting a C-long vector
            spread = np.tile if channels_last else np.repeat
            cached = (hi, lo, spread(hi[0], p), spread(lo[0], p))
            self._thresholds[key] = cached
        return cached

    def _count_outliers(self, native: NDArray[Any], channels_last: bool) -> NDArray[np.int64]:
        """Return per-position counts beyond each level, shape (n_levels, C, *spatial)."""
        c, s = self.n_channels, self.spatial_shape
        x = np.ascontiguousarray(native)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        hi, lo, hi0, lo0 = self._thresholds_for(x.dtype, channels_last)
        rows = x.reshape(x.shape[0], -1)
        mask = np.greater(rows, hi0)
        mask |= np.less(rows, lo0)
        flat = np.flatnonzero(mask)
        size = c * self.n_positions
        cell = flat % size
        chan = cell % c if channels_last else cell // self.n_positions
        vals = rows.reshape(-1)[flat]
        native_shape = (*s, c) if channels_last else (c, *s)
        out = np.empty((self.levels.size, *native_shape), dtype=np.int64)
        for i in range(self.levels.size):
            sel = (vals > hi[i, chan]) | (vals < lo[i, chan])
            out[i] = np.bincount(cell[sel], minlength=size).reshape(native_shape)
        return np.moveaxis(out, -1, 1) if channels_last else out

    def _merge_in(
        self,
        nb: int,
        mean_b: F64,
        m2_b: F64,
        cross_b: F64,
        counts_b: NDArray[np.int64] | None,
    ) -> None:
        """Merge the maps of another set of samples into self (Chan et al. 1979)."""
        if nb == 0:
            return
        if counts_b is not None and self.counts is not None:
            self.counts = self.counts + counts_b
        na = self.n
        if na == 0:
            self.n = nb
            self.mean = np.array(mean_b, dtype=np.float64)
            self.m2 = np.array(m2_b, dtype=np.float64)
            self.cross = np.array(cross_b, dtype=np.float64)
            return
        n = na + nb
        delta = mean_b - self.mean
        f = na * nb / n
        k = len(self.spatial_shape)
        cross = self.cross + cross_b
        for a in range(k):
            lo, hi = pair_slices(1 + a)
            # bivariate pairwise update of the co-moment (Pébay 2008, eq. 3.3)
            cross[a][lo] += f * delta[lo] * delta[hi]
        self.cross = cross
        self.m2 = self.m2 + m2_b + f * delta * delta
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    # -----------------------------------------------------------------------------------
    # merge and state
    # -----------------------------------------------------------------------------------

    def _check_compatible(self, other: SpatialAccumulator) -> None:
        """Raise InputError unless `other` accumulates the same quantities."""
        same = (
            self.n_channels == other.n_channels
            and self.spatial_shape == other.spatial_shape
            and np.array_equal(self.levels, other.levels)
            and (self.center is None) == (other.center is None)
        )
        if same and self.center is not None and other.center is not None:
            same = np.array_equal(self.center, other.center) and np.array_equal(
                np.asarray(self.scale), np.asarray(other.scale)
            )
        if not same:
            raise InputError(
                "Cannot merge spatial accumulators with different channels, spatial shapes, "
                "levels or outlier centre/scale"
            )

    def merge(self, other: SpatialAccumulator) -> SpatialAccumulator:
        """Return the accumulator of the union of the samples of self and `other`."""
        self._check_compatible(other)
        out = SpatialAccumulator.from_state(self.state())
        out.n_dropped += other.n_dropped
        out._merge_in(other.n, other.mean, other.m2, other.cross, other.counts)
        return out

    __add__ = merge

    def finish(self) -> SpatialAccumulator:
        """Return self: nothing waits (see :mod:`latentcheck.engine.protocol`)."""
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        out: State = {
            "n": np.array(self.n, dtype=np.int64),
            "n_dropped": np.array(self.n_dropped, dtype=np.int64),
            "spatial_shape": np.array(self.spatial_shape, dtype=np.int64),
            "mean": self.mean.copy(),
            "m2": self.m2.copy(),
            "cross": self.cross.copy(),
            "levels": self.levels.copy(),
        }
        if self.counts is not None and self.center is not None and self.scale is not None:
            out["counts"] = self.counts.copy()
            out["center"] = self.center.copy()
            out["scale"] = self.scale.copy()
        return out

    @classmethod
    def from_state(cls, state: State) -> SpatialAccumulator:
        """Rebuild an accumulator from :meth:`state`."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        spatial = tuple(int(s) for s in np.asarray(state["spatial_shape"]))
        has_maps = "counts" in state
        out = cls(
            mean.shape[0],
            spatial,
            mean=state["center"] if has_maps else None,
            std=state["scale"] if has_maps else None,
            levels=tuple(np.asarray(state["levels"]).tolist()) or MAP_LEVELS,
        )
        out.n = int(state["n"])
        out.n_dropped = int(state["n_dropped"])
        out.mean = mean.copy()
        out.m2 = np.array(state["m2"], dtype=np.float64)
        out.cross = np.array(state["cross"], dtype=np.float64)
        if has_maps:
            out.counts = np.array(state["counts"], dtype=np.int64)
        return out


# ---------------------------------------------------------------------------------------
# Effective sample size and well-separated positions
# ---------------------------------------------------------------------------------------


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
    shape = _check_spatial_shape(spatial_shape)
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
    shape = _check_spatial_shape(spatial_shape)
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
    shape = _check_spatial_shape(spatial_shape)
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
    shape = _check_spatial_shape(spatial_shape)
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


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------


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
