"""The two streaming passes over a data set, fused per chunk and run on worker threads.

Pass 1 accumulates moments, co-moments, extremes and the seeded sample of rows; pass 2
counts exceedances that need the final mean and std (and, when given, any further
second-pass accumulators such as Mahalanobis distances). Each worker thread streams a
contiguous run of chunks into its own accumulators; the partial states are merged in order.
numpy and BLAS release the GIL, so threads use both cores without copying data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .accumulate import (
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    NonFinite,
    Reservoir,
    Scratch,
    column_sums,
    tiled,
)
from .loading import LatentSource

__all__ = [
    "FirstPass",
    "PassHandle",
    "SecondPass",
    "default_chunk_rows",
    "default_threads",
    "run_pass",
    "start_pass",
]


def default_chunk_rows(n_dims: int) -> int:
    """Return rows per chunk: about 2 MiB of float64 per chunk.

    Smaller chunks stay in cache but pay numpy's per-call overhead (which holds the GIL
    and so serialises the worker threads) more often; 2 MiB was fastest on 2 cores.
    """
    return int(np.clip(2**18 // max(n_dims, 1), 512, 65536))


def default_threads() -> int:
    """Return the number of worker threads: the usable cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _finite_rows(
    block: NDArray[Any], row_start: int, nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64] | None, NDArray[Any]]:
    """Return (block without non-finite rows, their row ids or None if all kept, column sums).

    The column sums double as a cheap finiteness check (sklearn's _assert_all_finite does
    the same with a sum): only a non-finite sum triggers the exact elementwise scan.
    """
    sums = column_sums(block)
    if np.isfinite(sums).all():
        return block, None, sums
    finite = np.isfinite(block)
    rows_ok = finite.all(axis=1)
    if rows_ok.all():  # finite values whose sum overflowed the input dtype
        return block, None, block.sum(axis=0, dtype=np.float64)
    if nonfinite is not None:
        nonfinite.push_mask(finite, row_start)
    keep = np.flatnonzero(rows_ok)
    block = block[keep]
    return block, row_start + keep.astype(np.int64), block.sum(axis=0, dtype=np.float64)


class PushAccumulator(Protocol):
    """A second-pass accumulator: takes a finite block and its global row ids."""

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add the rows of a block."""

    def merge(self, other: Any) -> Any:
        """Return the merge of two accumulators."""


class FirstPass:
    """Moments, co-moments, extremes, non-finite counts and the sample, fused per chunk."""

    def __init__(
        self,
        n_dims: int,
        *,
        dtype: np.dtype[Any],
        seed: int,
        sample_size: int,
        covariance: bool,
        key_threshold: int | None = None,
    ) -> None:
        self.moments = Moments(n_dims)
        self.comoments = Comoments(n_dims) if covariance else None
        self.extremes = Extremes(n_dims)
        self.nonfinite = NonFinite(n_dims)
        self.reservoir = Reservoir(sample_size, n_dims, seed, dtype, threshold=key_threshold)
        self._scratch = Scratch()

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        block, row_ids, sums = _finite_rows(block, row_start, self.nonfinite)
        n = block.shape[0]
        if n == 0:
            return
        if row_ids is None:
            row_ids = np.arange(row_start, row_start + n, dtype=np.int64)
        shift = sums.astype(np.float64) / n
        dev, sq = self._scratch.get(2, n, block.shape[1])
        np.subtract(block, shift, out=dev)
        s1 = column_sums(dev)
        np.multiply(dev, dev, out=sq)
        if self.comoments is not None:
            gram = dev.T @ dev
            s2 = np.diagonal(gram).copy()
            self.comoments.push_shifted(n, shift, s1, gram)
        else:
            s2 = column_sums(sq)
        s3 = np.einsum("ij,ij->j", sq, dev)
        s4 = np.einsum("ij,ij->j", sq, sq)
        self.moments.push_shifted(n, shift, s1, s2, s3, s4)
        self.extremes.push(block)
        self.reservoir.push(block, row_ids)

    def merge(self, other: FirstPass) -> FirstPass:
        """Merge `other` into self (in place) and return self."""
        self.moments = self.moments.merge(other.moments)
        if self.comoments is not None and other.comoments is not None:
            self.comoments = self.comoments.merge(other.comoments)
        self.extremes = self.extremes.merge(other.extremes)
        self.nonfinite = self.nonfinite.merge(other.nonfinite)
        self.reservoir = self.reservoir.merge(other.reservoir)
        return self


class SecondPass:
    """Exceedance counts about the final mean/std and against the prior, plus extras."""

    def __init__(
        self,
        levels: Sequence[float],
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        dtype: np.dtype[Any],
        extras: Mapping[str, PushAccumulator] | None = None,
    ) -> None:
        self.centered = Exceedance(levels, mean, std, dtype)
        self.prior = Exceedance(levels, np.zeros_like(mean), np.ones_like(std), dtype)
        self.extras: dict[str, Any] = dict(extras or {})
        # one comparison per side finds the candidates of both counts: beyond the looser
        # of their lowest thresholds (both exact in the data's dtype)
        self._hi = np.minimum(
            self.centered.thresholds(upper=True), self.prior.thresholds(upper=True)
        )
        self._lo = np.maximum(
            self.centered.thresholds(upper=False), self.prior.thresholds(upper=False)
        )
        self._tiles: dict[int, tuple[NDArray[Any], NDArray[Any]]] = {}

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        block, row_ids, _ = _finite_rows(block, row_start, None)
        n, d = block.shape
        if n == 0:
            return
        hi, lo = tiled(self._tiles, self._hi, self._lo, n)
        above = np.flatnonzero(block > hi)
        below = np.flatnonzero(block < lo)
        flat = block.reshape(-1)
        self.centered.push_candidates(flat, d, above, below)
        self.prior.push_candidates(flat, d, above, below)
        if self.extras:
            if row_ids is None:
                row_ids = np.arange(row_start, row_start + block.shape[0], dtype=np.int64)
            for acc in self.extras.values():
                acc.push(block, row_ids)

    def merge(self, other: SecondPass) -> SecondPass:
        """Merge `other` into self (in place) and return self."""
        self.centered = self.centered.merge(other.centered)
        self.prior = self.prior.merge(other.prior)
        for name, acc in other.extras.items():
            self.extras[name] = self.extras[name].merge(acc)
        return self


class PassHandle:
    """A pass running on worker threads; :meth:`result` waits and merges in order."""

    def __init__(self, pool: ThreadPoolExecutor, futures: list[Any], blas: Any) -> None:
        self._pool = pool
        self._futures = futures
        self._blas = blas
        self._result: Any = None
        self._done = False

    def result(self) -> Any:
        """Return the merged accumulator (re-raising a worker's exception)."""
        if not self._done:
            try:
                parts = [f.result() for f in self._futures]
            finally:
                self._pool.shutdown(wait=True)
                self._blas.__exit__()
                self._done = True
            out = parts[0]
            for part in parts[1:]:
                out = out.merge(part)
            self._result = out
        return self._result


def start_pass(
    source: LatentSource,
    ranges: list[tuple[int, int]],
    make: Callable[[], Any],
    *,
    threads: int,
    progress: Callable[[int], None] | None = None,
) -> PassHandle:
    """Start streaming `source` over `ranges` into accumulators from `make()`.

    The ranges are split into `threads` contiguous runs, one per worker; the workers'
    accumulators are merged in order, so the result does not depend on scheduling. The
    caller may work meanwhile (numpy and BLAS release the GIL in the workers).
    """
    threads = max(1, min(threads, len(ranges)))
    runs = [list(r) for r in np.array_split(np.arange(len(ranges)), threads)]

    def work(run: list[int]) -> Any:
        acc = make()
        for k in run:
            start, stop = ranges[k]
            acc.push(source.read_items(start, stop), start * source.rows_per_item)
            if progress is not None:
                progress(stop - start)
        return acc

    blas = _single_threaded_blas()
    blas.__enter__()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="latentcheck")
    return PassHandle(pool, [pool.submit(work, r) for r in runs], blas)


def run_pass(
    source: LatentSource,
    ranges: list[tuple[int, int]],
    make: Callable[[], Any],
    *,
    threads: int,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Stream `source` over `ranges` into accumulators from `make()`; return their merge."""
    return start_pass(source, ranges, make, threads=threads, progress=progress).result()


class _single_threaded_blas:
    """Limit BLAS to one thread while our own worker threads run (no oversubscription)."""

    def __enter__(self) -> None:
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        self._limits.restore_original_limits()
