"""The seeded uniform sample of rows: bottom-k sampling on hashed global row ids.

:class:`Reservoir` keeps the rows whose keys (a hash of the global row index and the seed,
:func:`hash_rows`) are the smallest, so the sample depends on neither chunking, sharding
nor threading, and merges exactly (Cohen & Kaplan 2007). It follows the contract of
:mod:`latentcheck.engine.protocol`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Reservoir", "hash_rows", "key_threshold"]

State = dict[str, NDArray[Any]]


# ---------------------------------------------------------------------------------------
# Seeded uniform sample of rows
# ---------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_U64_MAX = np.uint64(np.iinfo(np.uint64).max)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Return the SplitMix64 finaliser of `z` (Steele, Lea & Flood 2014), elementwise."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    out: NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def hash_rows(row_ids: NDArray[np.integer[Any]], seed: int) -> NDArray[np.uint64]:
    """Return a pseudo-random 64-bit key for each global row index, fixed by `seed`."""
    salt = _salt(seed)
    with np.errstate(over="ignore"):
        z = np.asarray(row_ids, dtype=np.uint64) * _GOLDEN + salt
        return _splitmix64(z)


@functools.lru_cache(maxsize=16)
def _salt(seed: int) -> np.uint64:
    """Return the key offset of a seed (computed once per seed, not per chunk)."""
    salt: np.uint64 = _splitmix64(np.array([seed], dtype=np.uint64) + _GOLDEN)[0]
    return salt


def key_threshold(n_rows: int, capacity: int) -> int:
    """Return a prefilter threshold for a Reservoir of `capacity` out of `n_rows` rows.

    Keys are uniform on [0, 2^64), so about ``n_rows * t / 2^64`` rows fall below t. The
    threshold leaves room for ``capacity + 8·sqrt(capacity) + 64`` rows, eight standard
    deviations more than needed, so the `capacity` smallest keys all lie below it except
    with probability below 1e-15; :meth:`Reservoir.complete` detects that case and the
    caller then runs again without a prefilter. Rows above it are skipped without being
    buffered, which spares most copying and compaction.
    """
    room = capacity + 8.0 * math.sqrt(capacity) + 64.0
    if n_rows <= room:
        return int(np.iinfo(np.uint64).max)
    return int(min(room / n_rows, 1.0) * float(2**64 - 2**12))


class Reservoir:
    """A seeded uniform sample of at most `capacity` rows, mergeable and chunk-invariant.

    Each row gets a key that is a hash of its global index and the seed; the sample is the
    `capacity` rows with the smallest keys ("bottom-k" sampling, Cohen & Kaplan 2007). Since
    a row's key does not depend on how the data was chunked, sharded or threaded, the sample
    does not either, and two samples merge by keeping the smallest keys of the union. Sorted
    by key, the first m rows of the sample are themselves a uniform sample of size m.
    Rows are stored in the input dtype, so the sample holds the exact input values.

    References
    ----------
    .. [1] E. Cohen and H. Kaplan, "Summarizing data using bottom-k sketches", PODC 2007.
       https://doi.org/10.1145/1281100.1281133
    .. [2] G. L. Steele, D. Lea and C. H. Flood, "Fast splittable pseudorandom number
       generators", OOPSLA 2014. https://doi.org/10.1145/2660193.2660195
    """

    __slots__ = (
        "_buf",
        "_buffered",
        "capacity",
        "dtype",
        "keys",
        "n_dims",
        "prefilter",
        "prefiltered",
        "row_ids",
        "rows",
        "seed",
        "threshold",
    )

    def __init__(
        self,
        capacity: int,
        n_dims: int,
        seed: int,
        dtype: Any = np.float64,
        *,
        threshold: int | None = None,
    ) -> None:
        self.capacity = int(capacity)
        self.n_dims = int(n_dims)
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        self.keys = np.empty(0, dtype=np.uint64)
        self.row_ids = np.empty(0, dtype=np.int64)
        self.rows = np.empty((0, self.n_dims), dtype=self.dtype)
        # a prefilter (see `key_threshold`) skips rows that almost surely cannot enter the
        # sample; `prefiltered` counts them so that `complete` can tell when it was too low
        self.prefilter = np.uint64(np.iinfo(np.uint64).max if threshold is None else threshold)
        self.prefiltered = 0
        self.threshold = self.prefilter
        self._buf: list[tuple[NDArray[np.uint64], NDArray[np.int64], NDArray[Any]]] = []
        self._buffered = 0

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Offer the rows of `chunk`, whose global indices are `row_ids`."""
        if chunk.shape[0] == 0 or self.capacity == 0:
            return
        keys = hash_rows(row_ids, self.seed)
        sel = np.flatnonzero(keys <= self.threshold)
        if self.prefilter == self.threshold:  # until the sample is full: one comparison
            self.prefiltered += keys.size - sel.size
        elif self.prefilter != _U64_MAX:
            self.prefiltered += int(np.count_nonzero(keys > self.prefilter))
        if sel.size == 0:
            return
        self._buf.append((keys[sel], np.asarray(row_ids)[sel], np.array(chunk[sel], self.dtype)))
        self._buffered += sel.size
        if self.keys.size + self._buffered >= 2 * self.capacity:
            self._compact()

    def _select(
        self,
    ) -> tuple[list[NDArray[Any]], NDArray[np.int64], NDArray[np.intp], NDArray[np.uint64]]:
        """Return the parts' rows, all row ids, and the kept rows' indices and keys.

        The parts are the sample's rows and the buffer's blocks; the row ids are those of
        every part, concatenated; the indices (into that concatenation) are those of the
        `capacity` smallest keys, in key order.
        """
        keys = np.concatenate([self.keys, *(b[0] for b in self._buf)])
        ids = np.concatenate([self.row_ids, *(b[1] for b in self._buf)])
        parts = [self.rows, *(b[2] for b in self._buf)]
        idx = np.arange(keys.size)
        boundary_tie = False
        if keys.size > self.capacity:
            part = np.argpartition(keys, self.capacity)
            idx = part[: self.capacity]
            boundary_tie = bool(keys[part[self.capacity]] == keys[idx].max())
        order = idx[np.argsort(keys[idx], kind="stable")]
        sorted_keys = keys[order]
        if boundary_tie or np.any(sorted_keys[1:] == sorted_keys[:-1]):
            # ties in 64-bit keys (rare) are broken by row index, so the result is unique
            order = np.lexsort((ids, keys))[: self.capacity]
            sorted_keys = keys[order]
        return parts, ids, order, sorted_keys

    def _compact(self) -> None:
        """Keep the `capacity` smallest keys of the sample and the buffer."""
        if not self._buf:
            return
        parts, ids, order, sorted_keys = self._select()
        rows = np.concatenate(parts)
        self._buf = []
        self._buffered = 0
        if sorted_keys.size == self.capacity:
            self.threshold = min(self.threshold, sorted_keys[-1])
        # one gather of the rows, in key order (the rows are the bulk of the sample)
        self.keys, self.row_ids, self.rows = sorted_keys, ids[order], rows[order]

    @property
    def size(self) -> int:
        """Rows in the sample: a compaction keeps min(capacity, kept and buffered rows)."""
        return min(self.capacity, int(self.keys.size) + self._buffered)

    def complete(self) -> bool:
        """Return True unless the prefilter may have skipped a row of the true sample."""
        return self.size == self.capacity or self.prefiltered == 0

    def split(self, head: int) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.int64]]:
        """Return the sample as columns, and its first `head` rows in key order.

        Returns ``(columns, rows, row_ids)``: `columns` of shape (n_dims, m) holds every
        row of the sample, C-contiguous, in no particular order (for what depends only on
        each column's values, such as its sorted values); `rows` (at most `head`, key
        order) and their global `row_ids` are a uniform sample of their own. The columns
        come straight from the buffered parts, so the whole sample is never gathered in
        key order: for 100 000 x 64 float32, one 25 MB copy instead of three (the
        concatenation, the gather and the transposed copy). Leaves the reservoir as it is.
        """
        parts, ids, order, _ = self._select()
        bounds = np.cumsum([0, *(p.shape[0] for p in parts)])
        keep = np.zeros(int(bounds[-1]), dtype=bool)
        keep[order] = True
        columns = np.empty((self.n_dims, order.size), dtype=self.dtype)
        at = 0
        for rows, a, b in zip(parts, bounds[:-1], bounds[1:], strict=True):
            sel = keep[a:b]
            m = int(np.count_nonzero(sel))
            if m:
                columns[:, at : at + m] = (rows if m == rows.shape[0] else rows[sel]).T
                at += m
        first = order[:head]
        which = np.searchsorted(bounds, first, side="right") - 1
        out = np.empty((first.size, self.n_dims), dtype=self.dtype)
        for k, rows in enumerate(parts):
            mine = np.flatnonzero(which == k)
            if mine.size:
                out[mine] = rows[first[mine] - bounds[k]]
        return columns, out, ids[first]

    def finalize(self) -> Reservoir:
        """Flush the buffer; return self with rows sorted by key."""
        self._compact()
        return self

    def merge(self, other: Reservoir) -> Reservoir:
        """Return the sample of the union of the rows offered to self and `other`.

        Lazy: the other's rows join the buffer (no copy of the sample) and are compacted
        with it when it fills up, or at :meth:`finalize`. Merging the 64 segments of a
        pass one by one thus costs one compaction, not 64 copies of the growing sample.
        """
        a = Reservoir(self.capacity, self.n_dims, self.seed, self.dtype)
        # the arrays are shared, not copied: `_compact` replaces them and never writes into them
        a.keys, a.row_ids, a.rows = self.keys, self.row_ids, self.rows
        a.prefilter = self.prefilter
        a.threshold = min(self.threshold, other.threshold)
        a.prefiltered = self.prefiltered + other.prefiltered
        a._buf = list(self._buf)
        a._buffered = self._buffered
        for keys, ids, rows in ((other.keys, other.row_ids, other.rows), *other._buf):
            if keys.size:
                a._buf.append((keys, ids, rows.astype(a.dtype, copy=False)))
                a._buffered += keys.size
        if a.keys.size + a._buffered >= 2 * a.capacity:
            a._compact()
        return a

    __add__ = merge

    def finish(self) -> Reservoir:
        """Flush the buffer (see :meth:`finalize`) and return self."""
        return self.finalize()

    def state(self) -> State:
        """Return the state as a dict of arrays (flushing the buffer first)."""
        self._compact()
        return {
            "capacity": np.array(self.capacity),
            "seed": np.array(self.seed),
            "keys": self.keys.copy(),
            "row_ids": self.row_ids.copy(),
            "rows": self.rows.copy(),
            "threshold": np.array(self.threshold, dtype=np.uint64),
            "prefilter": np.array(self.prefilter, dtype=np.uint64),
            "prefiltered": np.array(self.prefiltered, dtype=np.int64),
        }

    @classmethod
    def from_state(cls, state: State) -> Reservoir:
        """Rebuild an accumulator from :meth:`state`."""
        rows = np.asarray(state["rows"])
        out = cls(int(state["capacity"]), rows.shape[1], int(state["seed"]), rows.dtype)
        out.keys = np.array(state["keys"], dtype=np.uint64)
        out.row_ids = np.array(state["row_ids"], dtype=np.int64)
        out.rows = np.array(rows)
        out.threshold = np.uint64(state["threshold"])
        out.prefilter = np.uint64(state.get("prefilter", out.threshold))
        out.prefiltered = int(state.get("prefiltered", 0))
        return out
