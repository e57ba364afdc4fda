"""Accumulators of the tails: per-dimension extremes and exceedance counts beyond k sigma.

Both are second-pass accumulators in an analysis (their thresholds need the final mean
and std): :class:`Exceedance` counts values beyond ``center ± k·scale`` for several k,
and :class:`Extremes` reads the minima and maxima off the same values beyond the
thresholds (see :class:`~latentcheck.engine.kernels.Beyond`). Both follow the contract of
:mod:`latentcheck.engine.protocol`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .kernels import Beyond, Scratch, TileCache, exact_threshold, fold, sparse_flatnonzero

__all__ = ["Exceedance", "Extremes"]

F64 = NDArray[np.float64]
State = dict[str, NDArray[Any]]


# ---------------------------------------------------------------------------------------
# Extremes and exceedances
# ---------------------------------------------------------------------------------------


class Extremes:
    """Per-dimension minimum and maximum."""

    __slots__ = ("_scratch", "max", "min")

    def __init__(self, n_dims: int, scratch: Scratch | None = None) -> None:
        self.min: F64 = np.full(n_dims, np.inf)
        self.max: F64 = np.full(n_dims, -np.inf)
        self._scratch = Scratch() if scratch is None else scratch

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64] | None = None) -> None:
        """Add the rows of `chunk` (`row_ids` are not needed)."""
        n = chunk.shape[0]
        if n == 0:
            return
        self._fold(chunk, self.min, np.minimum)
        self._fold(chunk, self.max, np.maximum)

    def _fold(self, chunk: NDArray[Any], ext: F64, op: np.ufunc) -> None:
        """Fold a whole chunk into one side's extremes (`op` np.minimum or np.maximum)."""
        n, d = chunk.shape
        (work,) = self._scratch.get(1, max(n // 2, 1), d, chunk.dtype, "fold")
        op(ext, fold(chunk, op, work), out=ext)

    def push_beyond(self, chunk: NDArray[Any], above: Beyond, below: Beyond) -> None:
        """Add the rows of `chunk`, given its values beyond per-column thresholds.

        `above` must hold every value of the chunk above its column's upper threshold, and
        `below` every one under its column's lower threshold (see :class:`Beyond`). A
        column with such a value has its maximum (minimum) among them; only the other
        columns are reduced. Second-pass thresholds at 3 sigma leave a Gaussian column
        of 4096 rows without a value beyond them in 0.4% of chunks, so the chunk is
        rarely read again (a fold of both sides would cost a pass over the chunk).
        """
        n, d = chunk.shape
        if n == 0:
            return
        for ext, side, op in ((self.max, above, np.maximum), (self.min, below, np.minimum)):
            if side.cols.size:
                op.at(ext, side.cols, side.vals.astype(np.float64))
            seen = np.zeros(d, dtype=bool)
            seen[side.cols] = True
            if seen.all():
                continue
            if not seen.any():
                self._fold(chunk, ext, op)
                continue
            missing = np.flatnonzero(~seen)
            ext[missing] = op(ext[missing], op.reduce(chunk[:, missing], axis=0))

    def merge(self, other: Extremes) -> Extremes:
        """Return the extremes of the union."""
        out = Extremes(self.min.shape[0])
        out.min = np.minimum(self.min, other.min)
        out.max = np.maximum(self.max, other.max)
        return out

    __add__ = merge

    def finish(self) -> Extremes:
        """Return self: nothing waits (see the Accumulator contract)."""
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        return {"min": self.min.copy(), "max": self.max.copy()}

    @classmethod
    def from_state(cls, state: State) -> Extremes:
        """Rebuild an accumulator from :meth:`state`."""
        out = cls(int(np.asarray(state["min"]).shape[0]))
        out.min = np.array(state["min"], dtype=np.float64)
        out.max = np.array(state["max"], dtype=np.float64)
        return out


class Exceedance:
    """Counts of values beyond ``center ± k·scale`` per dimension, for several k.

    ``upper[i, j]`` counts rows with ``x_j > center_j + k_i · scale_j`` and ``lower[i, j]``
    those with ``x_j < center_j − k_i · scale_j``; ``n`` counts the rows seen.

    The values beyond the lowest levels wait in a list and are counted a batch at a time
    (at most :attr:`BATCH_VALUES` of them, or when the counts are read): counting each
    chunk's few hundred on its own took some thirty small numpy calls per chunk.
    """

    __slots__ = (
        "_hi",
        "_lo",
        "_lower",
        "_tiles",
        "_upper",
        "_waiting",
        "_waiting_values",
        "center",
        "levels",
        "n",
        "scale",
    )

    #: values that wait at most before they are counted
    BATCH_VALUES = 1 << 16

    def __init__(
        self, levels: Sequence[float], center: F64, scale: F64, dtype: Any = np.float64
    ) -> None:
        self.levels = np.asarray(sorted(levels), dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        d = self.center.shape[0]
        self.n = 0
        self._upper = np.zeros((self.levels.size, d), dtype=np.int64)
        self._lower = np.zeros((self.levels.size, d), dtype=np.int64)
        self._waiting: list[tuple[Beyond, Beyond]] = []
        self._waiting_values = 0
        dt = np.dtype(dtype)
        hi = self.center + self.levels[:, None] * self.scale
        lo = self.center - self.levels[:, None] * self.scale
        self._hi = exact_threshold(hi, dt, upper=True)
        self._lo = exact_threshold(lo, dt, upper=False)
        self._tiles = TileCache()

    @property
    def upper(self) -> NDArray[np.int64]:
        """Counts above ``center + k·scale``, shape (n_levels, n_dims)."""
        self.count_waiting()
        return self._upper

    @property
    def lower(self) -> NDArray[np.int64]:
        """Counts below ``center − k·scale``, shape (n_levels, n_dims)."""
        self.count_waiting()
        return self._lower

    def thresholds(self, *, upper: bool) -> NDArray[Any]:
        """Return the lowest level's thresholds (upper or lower side), in the data dtype."""
        out: NDArray[Any] = self._hi[0] if upper else self._lo[0]
        return out

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64] | None = None) -> None:
        """Add the rows of `chunk`, in the dtype given at construction (`row_ids` unused)."""
        n, d = chunk.shape
        if n == 0:
            return
        hi, lo = self._tiles.get(n, self._hi[0], self._lo[0])
        flat = np.ascontiguousarray(chunk).reshape(-1)
        self.push_beyond(
            n,
            Beyond.gather(flat, d, sparse_flatnonzero(chunk > hi)),
            Beyond.gather(flat, d, sparse_flatnonzero(chunk < lo)),
        )

    def push_beyond(self, n_rows: int, above: Beyond, below: Beyond) -> None:
        """Add a chunk of `n_rows` rows given as its values beyond the lowest levels.

        `above` must hold every value over the lowest upper threshold, and `below` every
        one under the highest lower threshold; they may hold more, which are counted out.
        """
        self.n += n_rows
        self._waiting.append((above, below))
        self._waiting_values += above.cols.size + below.cols.size
        if self._waiting_values >= self.BATCH_VALUES:
            self.count_waiting()

    def count_waiting(self) -> None:
        """Count the waiting values into the tables (reading them does this too)."""
        if not self._waiting:
            return
        sides = [Beyond.join([w[k] for w in self._waiting]) for k in (0, 1)]
        self._waiting = []
        self._waiting_values = 0
        d = self._upper.shape[1]
        n_levels = self.levels.size
        for table, cmp, counts, side in (
            (self._hi, np.greater, self._upper, sides[0]),
            (self._lo, np.less, self._lower, sides[1]),
        ):
            cols, vals = side.cols, side.vals
            if cols.size == 0:
                continue
            # the levels increase, so each side's thresholds are monotone in the level: a
            # value passes levels 0..k-1 for the k it is counted with (one histogram of
            # (column, k) instead of a selection per level)
            k = cmp(vals, table[0][cols]).astype(np.intp)
            for i in range(1, n_levels):
                k += cmp(vals, table[i][cols])
            hist = np.bincount(cols * (n_levels + 1) + k, minlength=d * (n_levels + 1))
            passed = hist.reshape(d, n_levels + 1)[:, :0:-1].cumsum(axis=1)[:, ::-1]
            counts += passed.T

    def merge(self, other: Exceedance) -> Exceedance:
        """Return the counts of the union (same levels and thresholds)."""
        out = Exceedance.__new__(Exceedance)
        for name in ("levels", "center", "scale", "_hi", "_lo"):
            setattr(out, name, getattr(self, name))
        out._tiles = TileCache()
        out.n = self.n + other.n
        out._upper = self.upper + other.upper
        out._lower = self.lower + other.lower
        out._waiting = []
        out._waiting_values = 0
        return out

    __add__ = merge

    def finish(self) -> Exceedance:
        """Count the waiting values (see :meth:`count_waiting`) and return self."""
        self.count_waiting()
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        return {
            "levels": self.levels.copy(),
            "center": self.center.copy(),
            "scale": self.scale.copy(),
            "n": np.array(self.n, dtype=np.int64),
            "upper": self.upper.copy(),
            "lower": self.lower.copy(),
            "dtype": np.array(self._hi.dtype.str),
        }

    @classmethod
    def from_state(cls, state: State) -> Exceedance:
        """Rebuild an accumulator from :meth:`state`."""
        out = cls(state["levels"].tolist(), state["center"], state["scale"], str(state["dtype"]))
        out.n = int(state["n"])
        out._upper = np.array(state["upper"], dtype=np.int64)
        out._lower = np.array(state["lower"], dtype=np.int64)
        return out

    def rates(self) -> F64:
        """Return the fraction of rows beyond ±k·scale, shape (n_levels, n_dims)."""
        if self.n == 0:
            return np.full(self.upper.shape, np.nan)
        return (self.upper + self.lower) / self.n
