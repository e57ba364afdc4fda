"""The t-digest sketches of saved profiles (issue 19): the library, reads, resolution.

Each dimension of a :class:`~latentcheck.profiles.Profile` keeps one Apache DataSketches
``tdigest_double`` (Dunning and Ertl [1]_). This module gets the class (or says how to
install it), reads CDFs and quantiles off a sketch, settles its buffer, and gives the
resolution a report states for a rate read off it. A t-digest has no worst-case error
bound (Cormode et al. [2]_ build inputs on which its rank error is arbitrarily large); see
:mod:`latentcheck.profiles` for what was measured.

References
----------
.. [1] Dunning and Ertl, "Computing extremely accurate quantiles using t-digests",
       arXiv:1902.04023 (2019).
.. [2] Cormode, Mishra, Ross and Veselý, "Theory meets practice at the median: a worst case
       comparison of relative error quantile algorithms", KDD 2021,
       doi:10.1145/3447548.3467152.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

__all__ = [
    "MISSING",
    "resolution",
    "settle",
    "sketch_cdf",
    "sketch_quantiles",
    "tdigest",
    "update_sketches",
]

MISSING = (
    "Profiles need the datasketches package (t-digest quantile sketches); "
    "install it with: pip install 'latentcheck[profile]'"
)


def tdigest() -> Any:
    """Return datasketches' ``tdigest_double`` class, or raise a one-line error."""
    try:
        from datasketches import tdigest_double  # type: ignore[import-untyped]
    except ImportError:
        raise InputError(MISSING) from None
    return tdigest_double


def update_sketches(sketches: list[Any], block: NDArray[Any]) -> None:
    """Feed the finite rows of a (n_rows, n_dims) block to the per-dimension sketches.

    Rows with a non-finite value are left out, as the moments leave them out. One
    transposed float64 copy per block, sorted along each dimension: one library call per
    dimension on contiguous values, and the t-digest sorts what it buffers anyway, so
    numpy's sort plus the library's sort of sorted runs takes half the time of the
    library's sort alone. The sketch depends on the values, their order and the blocks
    (``chunk_rows``), never on chance.
    """
    finite = block if np.isfinite(block).all() else block[np.isfinite(block).all(axis=1)]
    cols = np.array(finite.T, dtype=np.float64, order="C")  # a copy: sorted in place
    cols.sort(axis=1)
    for sketch, col in zip(sketches, cols, strict=True):
        sketch.update(col)


def resolution(
    rank_lo: NDArray[np.float64], mass_hi: NDArray[np.float64], n: int, k: int
) -> NDArray[np.float64]:
    """Return the t-digest resolution of a two-sided tail mass (a fraction, not a bound).

    ``(r_lo(1 − r_lo) + r_hi(1 − r_hi))·z/k + 2/n`` with ``z = 4 ln(n/k) + 24``: about
    the largest centroid at either rank under DataSketches' K_2 scale function [1]_ (with
    δ = k, half the library's internal compression), plus one value per tail. A read
    between non-overlapping centroids is within it; overlapping centroids (adversarial
    orders, [2]_) can do worse.
    """
    if n <= 0:
        return np.zeros(np.broadcast(rank_lo, mass_hi).shape)
    z = 4.0 * math.log(max(n / k, 1.0)) + 24.0
    lo, hi = np.clip(rank_lo, 0.0, 1.0), np.clip(mass_hi, 0.0, 1.0)
    out: NDArray[np.float64] = (lo * (1 - lo) + hi * (1 - hi)) * z / k + 2.0 / n
    return out


def settle(sketches: list[Any]) -> None:
    """Merge each sketch's buffered values into its centroids, in place.

    ``serialize()`` does that as a side effect (the bytes are dropped). A settled sketch is
    the one its file holds, so a profile merges the same in memory and read back, and a
    merge of merges, ``(a + b) + c``, is the flat merge ``a + b + c`` to the byte.
    """
    for s in sketches:
        s.serialize()


def sketch_cdf(sketch: Any, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return the sketch's CDF at `points` (any order; NaN where a point is not finite)."""
    pts = np.asarray(points, dtype=np.float64)
    out = np.full(pts.shape, np.nan)
    finite = np.isfinite(pts)
    if finite.any():
        uniq, back = np.unique(pts[finite], return_inverse=True)
        cdf = np.asarray(sketch.get_cdf(uniq.tolist()), dtype=np.float64)[:-1]
        out[finite] = cdf[back]
    return out


def sketch_quantiles(sketch: Any, levels: Sequence[float]) -> NDArray[np.float64]:
    """Return the smallest values where the sketch's CDF reaches each of `levels`.

    Found by bisection on :func:`sketch_cdf` (DataSketches 5.2's own ``get_quantile``
    interpolates with swapped weights and is not monotone; its ``get_rank`` is). NaN for
    an empty sketch.
    """
    p = np.asarray(levels, dtype=np.float64)
    if sketch.is_empty():
        return np.full(p.size, np.nan)
    # the smallest x with CDF(x) >= p: bisection keeps CDF(lo) < p <= CDF(hi)
    lo = np.full(p.size, sketch.get_min_value(), dtype=np.float64)
    hi = np.where(sketch_cdf(sketch, lo) >= p, lo, sketch.get_max_value())
    for _ in range(200):  # halves the bracket each time; stops at adjacent floats
        mid = lo + (hi - lo) / 2
        if not np.any((mid > lo) & (mid < hi)):
            break
        below = sketch_cdf(sketch, mid) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out: NDArray[np.float64] = hi
    return out
