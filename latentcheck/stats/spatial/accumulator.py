"""The mergeable accumulator behind the spatial statistics of conv latents.

:class:`SpatialAccumulator` streams whole samples of shape (C, *spatial) and keeps, per
position, the mean and spread, the lag-1 cross-moments along each spatial axis and the
outlier counts; :mod:`latentcheck.stats.spatial.correlation` turns it into autocorrelations,
effective sample sizes and position maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...engine.kernels import exact_threshold
from ...errors import InputError
from ...validation import check_int, check_levels

__all__ = [
    "MAP_LEVELS",
    "SpatialAccumulator",
    "check_spatial_shape",
    "pair_slices",
]

F64 = NDArray[np.float64]
State = dict[str, NDArray[Any]]

#: Default sigma levels of the per-position outlier maps.
MAP_LEVELS = (3.0, 4.0)


def check_spatial_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Return `spatial_shape` (one sample's grid) as a tuple of positive ints, or raise."""
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
        self.spatial_shape = check_spatial_shape(spatial_shape)
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
