"""The scheduler: cuts a pass into segments and runs them on worker threads or processes.

A pass is cut into segments of consecutive chunks, fixed by the number of chunks alone.
Workers (forked processes on Linux, else threads; the caller too, when it has time) take
segments one at a time from a shared queue, so that a worker that started late or ran
slower simply takes fewer; each segment goes into a fresh accumulator, and the segments'
accumulators are merged along a tree of fixed shape (:func:`~latentcheck.engine.segments.
merge_tree`). The result is thus the same, to the last bit, whichever worker took which
segment, and however many workers there were. What a pass
computes is the plan's business (:mod:`latentcheck.engine.plan`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..io.latents import LatentSource
from .executor import ExecutorPass, current_executor
from .segments import ThreadTokens, Tokens, current_merge_fanout, merge_tree, participate
from .workers import WorkerPool

__all__ = [
    "MAX_SEGMENTS",
    "MIN_SEGMENT_CHUNKS",
    "SEGMENT_STATE_BUDGET",
    "PassHandle",
    "default_chunk_rows",
    "default_threads",
    "run_pass",
    "segment_cap",
    "segments_of",
    "single_threaded_blas",
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


#: A pass is cut into at most this many segments: with 2 workers, the later one waits
#: for at most one segment of the other (1/64 of the pass) at the end.
MAX_SEGMENTS = 64
#: and segments of this many chunks at least on average (each one's accumulator is merged).
MIN_SEGMENT_CHUNKS = 4
#: Bytes that the accumulators of all segments of a pass may hold until they are merged
#: (see `segment_cap`): a covariance is 8 d² bytes per segment, 32 MiB at d = 2048.
SEGMENT_STATE_BUDGET = 16 << 20


def segment_cap(state_bytes: int) -> int:
    """Return how many segments a pass whose accumulator holds `state_bytes` may have.

    At most MAX_SEGMENTS, and at least 2 (a worker's and the caller's, as many states
    as two workers with one run each would hold).
    """
    return int(min(MAX_SEGMENTS, max(2, SEGMENT_STATE_BUDGET // max(1, int(state_bytes)))))


def segments_of(
    ranges: list[tuple[int, int]], max_segments: int = MAX_SEGMENTS
) -> list[list[tuple[int, int]]]:
    """Cut `ranges` into at most `max_segments` runs of consecutive chunks, longest first.

    Their lengths fall linearly to a quarter of the first: the workers finish a pass
    within one of the last, short segments of each other, while the segments stay few.
    They depend only on len(ranges) and `max_segments`, never on the workers.
    """
    n = len(ranges)
    m = max(1, min(max_segments, n // MIN_SEGMENT_CHUNKS))
    # weights 4m+... down to m+...: the first segment 4x the last
    weights = 3.0 * (m - np.arange(m)) + m
    cuts = np.rint(np.concatenate([[0.0], np.cumsum(weights)]) * (n / weights.sum()))
    # non-decreasing, so dropping the empty runs dedups them (no np.unique: in numpy 2.4
    # its first call imports numpy.ma, between the fork and the first job)
    segs = [ranges[a:b] for a, b in itertools.pairwise(cuts.astype(np.int64).tolist()) if b > a]
    return segs or [[]]


class _Caller:
    """The caller's own run of a pass, shaped like a future: computed at first request."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn: Callable[[], Any] | None = fn
        self._value: Any = None

    def result(self) -> Any:
        if self._fn is not None:
            self._value = self._fn()
            self._fn = None
        return self._value


class PassHandle:
    """A pass running on workers; :meth:`result` waits and merges along the merge tree."""

    def __init__(self, futures: list[Any], tokens: Tokens, cleanup: Callable[[], None]) -> None:
        self._fanout = current_merge_fanout()  # that of the pass's start
        self._futures = futures
        self._tokens = tokens
        self._cleanup = cleanup
        self._result: Any = None
        self._done = False

    def result(self) -> Any:
        """Return the merged accumulator (re-raising a worker's exception)."""
        if not self._done:
            try:
                parts = [pair for f in self._futures for pair in f.result()]
            except BaseException:
                self._tokens.drain()
                _cancel(self._futures)
                raise
            finally:
                self._cleanup()
                self._done = True
            self._result = merge_tree(parts, self._fanout)
        return self._result

    def cancel(self) -> None:
        """Stop the pass without its result (the caller failed meanwhile).

        A deferred run of the caller's own is not started; worker processes are
        terminated, worker threads finish their current segment.
        """
        if not self._done:
            self._done = True
            try:
                self._tokens.drain()
                _cancel(self._futures)
            finally:
                self._cleanup()


def start_pass(
    source: LatentSource,
    ranges: list[tuple[int, int]],
    make: Callable[[], Any],
    *,
    threads: int,
    progress: Callable[[int], None] | None = None,
    pool: WorkerPool | None = None,
    in_caller: bool = False,
    defer: bool = False,
    shared_results: bool = False,
    max_segments: int = MAX_SEGMENTS,
) -> PassHandle | ExecutorPass:
    """Start streaming `source` over `ranges` into accumulators from `make()`.

    The ranges are cut into segments (:func:`segments_of`) that the workers take from a
    shared queue; :meth:`PassHandle.result` merges the segments' accumulators along the
    tree of the current fan-out (:func:`~latentcheck.engine.segments.use_merge_fanout`),
    so the result does not depend on scheduling or on the number of workers.

    Inside :func:`~latentcheck.engine.executor.use_executor`, each segment is a task on
    that executor instead (see :class:`~latentcheck.engine.executor.ExecutorPass`).
    With a `pool`, its processes are the workers (and `make` must pickle); otherwise
    `threads` worker threads. With `in_caller` the caller takes segments too: before
    returning or, with `defer`, when it first asks for :meth:`PassHandle.result` (so that
    it can do other work first while the workers stream). With `shared_results`, worker
    processes return their large arrays through shared memory (see :class:`Arena`).
    `max_segments` bounds the accumulators held until the merge (see :func:`segment_cap`).
    """
    segments = segments_of(ranges, max_segments)
    on = current_executor()
    if on is not None:  # one task per segment (issue 19)
        return ExecutorPass(on, source, make, segments, progress)
    tokens: Tokens = pool.tokens if pool is not None else ThreadTokens()
    tokens.fill(len(segments))

    blas = _single_threaded_blas()
    blas.__enter__()
    futures: list[Any]
    cleanup: Callable[[], None]
    try:
        if pool is not None:
            futures = [w.submit(make, segments, shared_results) for w in pool.workers]
            cleanup = blas.__exit__
        else:
            n_threads = max(1, min(threads, len(segments)))
            executor = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="latentcheck")
            futures = [
                executor.submit(participate, source, make, segments, tokens, progress)
                for _ in range(n_threads)
            ]

            def shutdown() -> None:
                executor.shutdown(wait=True)
                blas.__exit__()

            cleanup = shutdown

    except BaseException:
        tokens.drain()
        blas.__exit__()
        raise
    if in_caller:
        caller = _Caller(lambda: participate(source, make, segments, tokens, progress))
        futures.insert(0, caller)
        if not defer:
            try:
                caller.result()
            except BaseException:
                tokens.drain()
                _cancel(futures)
                cleanup()
                raise
    return PassHandle(futures, tokens, cleanup)


def _cancel(futures: list[Any]) -> None:
    """Cancel the workers that have not finished (threads finish their current segment)."""
    for f in futures:
        if hasattr(f, "cancel"):
            f.cancel()


def run_pass(
    source: LatentSource,
    ranges: list[tuple[int, int]],
    make: Callable[[], Any],
    *,
    threads: int,
    progress: Callable[[int], None] | None = None,
    pool: WorkerPool | None = None,
    max_segments: int = MAX_SEGMENTS,
) -> Any:
    """Stream `source` over `ranges` into accumulators from `make()`; return their merge.

    Without a `pool`, `threads` worker threads; with one, its processes and the caller.
    """
    return start_pass(
        source,
        ranges,
        make,
        threads=threads,
        progress=progress,
        pool=pool,
        in_caller=pool is not None,
        max_segments=max_segments,
    ).result()


class _single_threaded_blas:
    """Limit BLAS to one thread while our own workers run (no oversubscription).

    Inside :func:`single_threaded_blas` (an analysis holds it throughout) this is free:
    each threadpoolctl limit walks every loaded library (slow once scipy is loaded), and
    pass 2's limit fell between the passes, where the workers wait.
    """

    def __enter__(self) -> None:
        self._limits: Any = None
        if _BLAS_HELD[0] == 0:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()


#: How many `single_threaded_blas` contexts are open in this process.
_BLAS_HELD = [0]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS at one thread for the duration (restored after); passes inside skip theirs."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _BLAS_HELD[0] += 1
        try:
            yield
        finally:
            _BLAS_HELD[0] -= 1
