"""Numeric inner loops of the accumulators: the per-chunk kernels and their buffers.

Everything here works on one block of rows at a time and holds no statistical state:
column sums through BLAS, centring and column dot products viewed k rows at a time (long
numpy inner loops), halving folds, sparse scans of threshold masks, thresholds exact in
the data's dtype, and the per-thread scratch blocks and tiled rows that spare the
allocator. The accumulators (:mod:`latentcheck.engine.accumulators`, :mod:`latentcheck.engine.plan`)
combine them; what each kernel saves is measured in the changelog, not here.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Beyond",
    "Scratch",
    "TileCache",
    "centre",
    "column_dots",
    "column_sums",
    "exact_threshold",
    "fold",
    "sparse_flatnonzero",
    "widen",
]

F64 = NDArray[np.float64]


def _ones(n: int, dtype: np.dtype[Any]) -> NDArray[Any]:
    """Return a vector of n ones in `dtype` (cached per size and dtype)."""
    key = (n, dtype.str)
    vec = _ONES.get(key)
    if vec is None:
        vec = np.ones(n, dtype=dtype)
        if len(_ONES) < 64:
            _ONES[key] = vec
    return vec


_ONES: dict[tuple[int, str], NDArray[Any]] = {}


def column_sums(chunk: NDArray[Any]) -> NDArray[Any]:
    """Return the column sums of a 2-D block, through BLAS (a matrix-vector product)."""
    if chunk.dtype.kind != "f" or not chunk.flags.c_contiguous:
        return np.asarray(chunk.sum(axis=0))
    sums: NDArray[Any] = _ones(chunk.shape[0], chunk.dtype) @ chunk
    return sums


class Scratch:
    """Scratch blocks reused from chunk to chunk, one set per thread.

    Megabyte-sized temporaries can go back to the kernel when freed and be faulted in and
    zeroed again for the next chunk: in an isolated loop that made a pass-1 chunk several
    times slower. A factory hands one Scratch to all the accumulators it
    makes (a pass makes one per segment), so the blocks also outlive each segment. Each
    thread gets its own blocks, and each use its own `slot`; a block is only valid
    during the call that asked for it.
    """

    __slots__ = ("_local",)

    def __init__(self) -> None:
        # per thread: a worker thread's blocks go with it when it ends
        self._local = threading.local()

    def get(
        self, count: int, n: int, d: int, dtype: Any = np.float64, slot: str = ""
    ) -> tuple[NDArray[Any], ...]:
        """Return `count` C-contiguous (n, d) blocks of `dtype` (views of one buffer)."""
        bufs: dict[str, NDArray[Any]] | None = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        buf = bufs.get(slot)
        if (
            buf is None
            or buf.dtype != dtype
            or buf.shape[0] < count
            or buf.shape[1] < n
            or buf.shape[2] != d
        ):
            buf = bufs[slot] = np.empty((count, n, d), dtype)
        return tuple(buf[k, :n] for k in range(count))

    def __reduce__(self) -> tuple[type[Scratch], tuple[()]]:
        # a cache: it travels to worker processes and back empty
        return (Scratch, ())


class TileCache:
    """Row vectors tiled to whole chunks (long inner loops in numpy), for up to four sizes.

    Four covers the full chunk, the last one, and chunks short of their non-finite rows.
    Each owner asks for the same vectors every time, so tiles are looked up by row count
    alone. Like :class:`Scratch`, a cache: it pickles empty (worker processes send their
    accumulators back without it).
    """

    __slots__ = ("_tiles",)

    def __init__(self) -> None:
        self._tiles: dict[int, tuple[NDArray[Any], ...]] = {}

    def __reduce__(self) -> tuple[type[TileCache], tuple[()]]:
        return (TileCache, ())

    def get(self, n: int, *rows: NDArray[Any]) -> tuple[NDArray[Any], ...]:
        """Return each of `rows` (vectors of shape (d,)) tiled to n rows."""
        t = self._tiles.get(n)
        if t is None:
            t = tuple(np.tile(r, (n, 1)) for r in rows)
            if len(self._tiles) < 4:
                self._tiles[n] = t
        return t


def fold(chunk: NDArray[Any], op: np.ufunc, work: NDArray[Any] | None = None) -> NDArray[Any]:
    """Return op.reduce(chunk, axis=0) by halving, which keeps numpy's inner loops long.

    `work`, if given, is a C-contiguous buffer of at least ``(len(chunk) // 2, n_dims)``
    in the chunk's dtype; the halves are folded into it instead of into new arrays (fresh
    megabyte-sized temporaries for every chunk cost more in page faults than the fold).
    """
    a = chunk
    while a.shape[0] > 1:
        h = a.shape[0] // 2
        r = op(a[:h], a[h : 2 * h], out=None if work is None else work[:h])
        if a.shape[0] % 2:
            r[0] = op(r[0], a[-1])
        a = r
    return np.array(a[0], copy=True)


def exact_threshold(value: F64, dtype: np.dtype[Any], *, upper: bool) -> NDArray[Any]:
    """Return thresholds t in `dtype` with ``x > value ⇔ x > t`` (upper) for every x in dtype.

    For the lower side (``upper=False``) the equivalence is ``x < value ⇔ x < t``. Comparing
    float32 data against float32 thresholds chosen this way gives exactly the counts a
    float64 comparison would, at half the memory traffic.
    """
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(over="ignore"):
        # beyond the dtype's range the cast gives ±inf, stepped back to ±max below: no
        # finite x of the dtype lies beyond either, exactly as in float64 (issue 20)
        t = value.astype(dtype)
    wide = t.astype(np.float64)
    if upper:
        # a rounded-up threshold would miss values in (value, t]: step down one ulp
        return np.where(wide > value, np.nextafter(t, dtype.type(-np.inf)), t)
    return np.where(wide < value, np.nextafter(t, dtype.type(np.inf)), t)


def sparse_flatnonzero(mask: NDArray[np.bool_]) -> NDArray[np.intp]:
    """Return ``np.flatnonzero(mask)`` for a C-contiguous mask with few True values.

    numpy scans a boolean array byte by byte when it collects the positions. Viewed as
    8-byte words, the nonzero words are found first (cheaply), and only their bytes are
    scanned, which is faster for the 0.1-1% of values that pass pass 2's thresholds. A
    mask that is dense anyway takes numpy's route.
    """
    flat = mask.reshape(-1)
    w = flat.size // 8
    if w == 0:
        return np.flatnonzero(flat)
    words = flat[: w * 8]
    hit = np.flatnonzero(words.view(np.uint64) != 0)
    if hit.size > w // 4:
        return np.flatnonzero(flat)
    p = np.flatnonzero(words.reshape(w, 8)[hit])
    out: NDArray[np.intp] = hit[p >> 3] * 8 + (p & 7)
    if flat.size > w * 8:
        out = np.concatenate([out, w * 8 + np.flatnonzero(flat[w * 8 :])])
    return out


@dataclass(frozen=True, slots=True)
class Beyond:
    """Values of a chunk beyond per-column thresholds on one side, with their columns.

    Attributes
    ----------
    cols : ndarray of intp
        Column of each value.
    vals : ndarray
        The values, in the chunk's dtype and C order.
    """

    cols: NDArray[np.intp]
    vals: NDArray[Any]

    @classmethod
    def gather(cls, flat: NDArray[Any], d: int, idx: NDArray[np.intp]) -> Beyond:
        """Return the values of `flat` (a C-order chunk of `d` columns) at positions `idx`."""
        return cls(idx % d, flat[idx])

    @classmethod
    def join(cls, parts: list[Beyond]) -> Beyond:
        """Return the values of several chunks as one :class:`Beyond`."""
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.cols for p in parts]), np.concatenate([p.vals for p in parts]))


def widen(block: NDArray[Any], out: NDArray[np.float64]) -> tuple[NDArray[np.float64], F64]:
    """Return the rows of `block` in float64 and their column sums.

    A float64 block is returned as is; any other is copied (exactly) into `out`, the
    float64 block that :func:`centre` then centres in place. Summed from the float64
    rows, the sums double as the finiteness check (a NaN or inf makes its column's sum
    non-finite; sklearn's _assert_all_finite does the same). Summed in float32, as
    before, they served as the check but made a poor shift: at |mean| = 3e6 std, 20000
    rows summed to within 2000 std of the truth, and the kurtosis about that shift kept
    three digits.
    """
    if block.dtype == np.float64:
        return block, column_sums(block)
    np.copyto(out, block)
    return out, column_sums(out)


def centre(rows: NDArray[np.float64], shift: F64, out: NDArray[np.float64]) -> None:
    """Write ``rows - shift`` into `out` (which may be `rows`), float64 row by row.

    A broadcast row gives numpy inner loops of d elements; the rows viewed k at a time
    give inner loops of k·d elements against the shift tiled k times: the same bits,
    faster with the float32 copy of :func:`widen`.
    """
    n, d = rows.shape
    k = math.gcd(n, 64)
    np.subtract(rows.reshape(n // k, k * d), np.tile(shift, k), out=out.reshape(n // k, k * d))


def column_dots(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``Σ_i a_ij b_ij`` for each column j of two C-contiguous (n, d) blocks.

    Viewed k rows at a time (k = gcd(n, 64)), numpy's inner loops run over k·d elements
    instead of d, and the k partial sums per column add up at the end (fewer, longer
    inner loops).
    """
    n, d = a.shape
    k = math.gcd(n, 64)
    wide = np.einsum("ij,ij->j", a.reshape(n // k, k * d), b.reshape(n // k, k * d))
    out: NDArray[np.float64] = wide.reshape(k, d).sum(axis=0)
    return out
