"""Mergeable per-dimension summaries of posterior log-variances ln σ².

Helpers of :class:`~latentcheck.stats.posterior.rate.PosteriorAccumulator` (internal to the
``stats.posterior`` package, public so that ``rate`` may import them): the exact
count of entries within :data:`AT_MIN_TOLERANCE` of each dimension's running minimum (where
an encoder's lower clamp shows), kept as the :data:`NEAR_MIN_SLOTS` smallest distinct values
with their counts so that it survives chunks and merges, and the fixed-edge histogram of
ln σ² over [-32, 32] with its per-dimension and pooled quantiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AT_MIN_TOLERANCE",
    "HIST_HI",
    "HIST_LO",
    "NEAR_MIN_SLOTS",
    "compress_near_min",
    "histogram",
    "logvar_quantiles",
    "near_min_of_chunk",
    "restrict_near_min",
]

#: An entry counts as "at the minimum" log-variance when it is within this of the minimum.
AT_MIN_TOLERANCE = 1e-6
#: Distinct near-minimum values kept exactly per dimension (see PosteriorAccumulator).
NEAR_MIN_SLOTS = 16

#: Fixed edges of the ln σ² histogram.
HIST_LO, HIST_HI = -32.0, 32.0


# --------------------------------------------------------------------------------------------
# exact count of entries within AT_MIN_TOLERANCE of the running minimum


def compress_near_min(
    n_dims: int,
    cols: NDArray[np.intp],
    vals: NDArray[np.float64],
    counts: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Return (values, counts, tail): the NEAR_MIN_SLOTS smallest distinct values per column."""
    slots = NEAR_MIN_SLOTS
    out_v = np.full((n_dims, slots), np.inf)
    out_c = np.zeros((n_dims, slots), dtype=np.int64)
    tail = np.zeros(n_dims, dtype=np.int64)
    order = np.lexsort((vals, cols))
    cols, vals, counts = cols[order], vals[order], counts[order]
    new = np.ones(cols.size, dtype=bool)
    new[1:] = (cols[1:] != cols[:-1]) | (vals[1:] != vals[:-1])
    starts = np.flatnonzero(new)
    g_cols, g_vals = cols[starts], vals[starts]
    g_counts = np.add.reduceat(counts, starts)
    col_start = np.ones(g_cols.size, dtype=bool)
    col_start[1:] = g_cols[1:] != g_cols[:-1]
    first = np.flatnonzero(col_start)
    rank = np.arange(g_cols.size) - np.repeat(first, np.diff(np.append(first, g_cols.size)))
    keep = rank < slots
    out_v[g_cols[keep], rank[keep]] = g_vals[keep]
    out_c[g_cols[keep], rank[keep]] = g_counts[keep]
    np.add.at(tail, g_cols[~keep], g_counts[~keep])
    return out_v, out_c, tail


def near_min_of_chunk(
    lv: NDArray[np.float64], col_min: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Return the near-minimum summary (values, counts, tail) of one chunk."""
    n_dims = lv.shape[1]
    in_window = lv <= col_min + AT_MIN_TOLERANCE
    cols, vals = np.arange(n_dims), col_min
    if np.count_nonzero(in_window) == n_dims:
        # every column holds its minimum once and nothing else in the window (continuous data)
        return compress_near_min(n_dims, cols, vals, np.ones(n_dims, dtype=np.int64))
    n_window = np.count_nonzero(in_window, axis=0)
    at_min = np.count_nonzero(lv == col_min, axis=0)
    counts = at_min.astype(np.int64)
    # entries equal to the minimum (the clamp case: whole columns at -30) are counted
    # without sorting; only the few others inside the window are located and sorted
    if np.any(n_window > at_min):
        rows, o_cols = np.nonzero(in_window & (lv != col_min))
        cols = np.concatenate([cols, o_cols])
        vals = np.concatenate([vals, lv[rows, o_cols]])
        counts = np.concatenate([counts, np.ones(o_cols.size, dtype=np.int64)])
    return compress_near_min(n_dims, cols, vals, counts)


def restrict_near_min(
    side: dict[str, NDArray[Any]], new_min: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Return one side's near-minimum summary restricted to the window of ``new_min``."""
    vals, counts = side["near_min_values"], side["near_min_counts"]
    tail, exact = side["near_min_tail"], side["near_min_exact"]
    limit = new_min + AT_MIN_TOLERANCE
    keep = vals <= limit[:, None]
    out_v = np.where(keep, vals, np.inf)
    out_c = np.where(keep, counts, 0)
    # The tail holds values in (largest listed value, old minimum + tol]. It is still exact when the
    # window did not move, or when all of it lies above the new window; otherwise it is kept
    # as an upper bound and the dimension is flagged.
    same = side["logvar_min"] == new_min
    above = vals[:, -1] > limit
    out_tail = np.where(same | ~above, tail, 0)
    # listed values are always exact, so dropping the whole tail restores exactness
    out_exact = above | (tail == 0) | (exact & same)
    return out_v, out_c, out_tail, out_exact


# --------------------------------------------------------------------------------------------
# histogram of ln σ² and its quantiles


def histogram(
    lv: NDArray[np.float64], bins: int, work: NDArray[np.float64], index: NDArray[np.intp]
) -> NDArray[np.int64]:
    """Return per-column counts (n_dims, bins + 2): bin 0 below -32, 1..bins, bins + 1 above."""
    n_dims = lv.shape[1]
    np.subtract(lv, HIST_LO, out=work)
    work *= bins / (HIST_HI - HIST_LO)
    np.floor(work, out=work)
    np.clip(work, -1, bins, out=work)
    # shift to bin 0..bins + 1 and offset each column into its own range of the flat count
    work += 1.0 + np.arange(n_dims) * (bins + 2.0)
    np.copyto(index, work, casting="unsafe")
    flat = np.bincount(index.ravel(), minlength=n_dims * (bins + 2))
    return flat.reshape(n_dims, bins + 2).astype(np.int64, copy=False)


def logvar_quantiles(
    hist: NDArray[np.int64],
    bins: int,
    lv_min: NDArray[np.float64],
    lv_max: NDArray[np.float64],
    at_min: NDArray[np.int64],
    levels: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ln σ² quantiles per dimension (n_dims, n_levels) and pooled (n_levels,)."""
    n_dims = hist.shape[0]
    width = (HIST_HI - HIST_LO) / bins
    edges = HIST_LO + width * np.arange(bins + 1)
    # bin k covers [lower[k], upper[k]]; the outer bins stretch to the exact extremes and
    # every bin is clipped to [min, max] of its dimension
    lower = np.concatenate([[-np.inf], edges])[None, :].repeat(n_dims, axis=0)
    upper = np.concatenate([edges, [np.inf]])[None, :].repeat(n_dims, axis=0)
    np.maximum(lower, lv_min[:, None], out=lower)
    np.minimum(upper, lv_max[:, None], out=upper)
    np.minimum(lower, upper, out=lower)
    # Remove the point mass at the minimum from the lowest bins: the at-minimum entries are
    # the smallest ones, so they fill bin(min) first and spill into the next bin only when the
    # window [min, min + 1e-6] straddles an edge.
    counts = hist.astype(np.float64)
    taken = np.minimum(np.cumsum(counts, axis=1), at_min[:, None].astype(np.float64))
    taken_before = np.concatenate([np.zeros((n_dims, 1)), taken[:, :-1]], axis=1)
    counts -= taken - taken_before
    n_total = at_min + counts.sum(axis=1)

    per_dim = np.empty((n_dims, levels.size))
    cum = at_min[:, None] + np.cumsum(counts, axis=1)
    for i, p in enumerate(levels):
        target = p * n_total
        k = np.minimum(
            np.argmax(cum >= target[:, None] - 1e-9 * n_total[:, None], axis=1), bins + 1
        )
        rows = np.arange(n_dims)
        before = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], at_min)
        c = counts[rows, k]
        frac = np.clip(np.divide(target - before, c, out=np.zeros(n_dims), where=c > 0), 0, 1)
        value = lower[rows, k] + frac * (upper[rows, k] - lower[rows, k])
        per_dim[:, i] = np.where(target <= at_min, lv_min, value)

    # pooled: interior bins untouched by clipping share their edges across dimensions
    clipped = (lower != np.concatenate([[-np.inf], edges])) | (
        upper != np.concatenate([edges, [np.inf]])
    )
    clipped[:, [0, bins + 1]] = True
    shared = np.where(clipped, 0.0, counts).sum(axis=0)
    seg_a = np.concatenate([edges[:-1], lower[clipped], lv_min])
    seg_b = np.concatenate([edges[1:], upper[clipped], lv_min])
    seg_w = np.concatenate([shared[1:-1], counts[clipped], at_min.astype(np.float64)])
    return per_dim, _segment_quantiles(seg_a, seg_b, seg_w, levels)


def _segment_quantiles(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    w: NDArray[np.float64],
    levels: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Return quantiles of a mixture of uniform segments [a, b] with weights w (a == b: atom)."""
    keep = w > 0
    a, b, w = a[keep], b[keep], w[keep]
    atom = b <= a
    slope = w[~atom] / (b[~atom] - a[~atom])
    pos = np.concatenate([a[~atom], b[~atom], a[atom]])
    dslope = np.concatenate([slope, -slope, np.zeros(np.count_nonzero(atom))])
    jump = np.concatenate([np.zeros(2 * slope.size), w[atom]])
    upos, inv = np.unique(pos, return_inverse=True)
    slope_after = np.cumsum(np.bincount(inv, weights=dslope, minlength=upos.size))
    jumps = np.bincount(inv, weights=jump, minlength=upos.size)
    gain = np.clip(slope_after[:-1], 0.0, None) * np.diff(upos)
    f_before = np.concatenate([[0.0], np.cumsum(jumps[:-1] + gain)])
    f_after = f_before + jumps
    total = f_after[-1]
    out = np.empty(levels.size)
    for i, p in enumerate(levels):
        target = p * total
        k = min(int(np.searchsorted(f_after, target - 1e-9 * total, side="left")), upos.size - 1)
        if k > 0 and f_before[k] >= target and gain[k - 1] > 0:
            frac = (target - f_after[k - 1]) / gain[k - 1]
            out[i] = upos[k - 1] + min(max(frac, 0.0), 1.0) * (upos[k] - upos[k - 1])
        else:
            out[i] = upos[k]
    return out
