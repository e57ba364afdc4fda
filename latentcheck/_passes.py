"""The two streaming passes over a data set, fused per chunk and run on worker threads.

Pass 1 accumulates moments, co-moments, extremes and the seeded sample of rows; pass 2
counts exceedances that need the final mean and std (and, when given, any further
second-pass accumulators such as Mahalanobis distances). Each worker thread streams a
contiguous run of chunks into its own accumulators; the partial states are merged in order.
numpy and BLAS release the GIL, so threads use both cores without copying data.
"""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    TileCache,
    column_sums,
)
from .loading import LatentSource

__all__ = [
    "FirstPass",
    "PassHandle",
    "SecondPass",
    "SecondPassFactory",
    "WorkerPool",
    "default_chunk_rows",
    "default_threads",
    "processes_available",
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

    def finish(self) -> None:
        """Sort the sample by key now (a worker does it before sending its accumulator)."""
        self.reservoir.finalize()

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
        self._tiles = TileCache()

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        block, row_ids, _ = _finite_rows(block, row_start, None)
        n, d = block.shape
        if n == 0:
            return
        hi, lo = self._tiles.get(self._hi, self._lo, n)
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


#: Passes over fewer values than this stay on threads: forking costs milliseconds, and the
#: GIL only bites when thousands of chunks compete with the caller's own Python work.
PROCESS_MIN_VALUES = 1 << 22


def processes_available() -> bool:
    """Return True where worker processes can be forked cheaply and safely (Linux).

    macOS can fork but its system BLAS (Accelerate) and frameworks are not fork-safe, and
    Windows cannot fork; both keep the worker threads.
    """
    return sys.platform == "linux" and hasattr(os, "fork")


class WorkerPool:
    """Worker processes forked at the start of an analysis, each running passes on request.

    Each worker reads its chunks of the file itself (through the page cache; no data
    passes between the processes) and sends back only its accumulator, through a pipe.
    Unlike worker threads, a process never waits for the GIL: with the caller busy in
    Python (tests on the sample), a worker thread's pass 2 took 2.3 s of wall time for
    0.9 s of CPU, each of its thousands of numpy calls queueing for the GIL.

    The workers are forked before the analysis allocates anything large, so they share
    little with the parent that it could later copy-on-write; jobs (an accumulator
    factory and the chunk ranges) and results travel pickled through the pipes between
    this process and its own children, never through files.
    """

    def __init__(
        self,
        source: LatentSource,
        size: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        for stream in (sys.stdout, sys.stderr):  # else the children flush them again
            if stream is not None:
                stream.flush()
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns when a process with OS threads forks; here the only
                # others are OpenBLAS's idle helpers, whose pthread_atfork handlers make
                # the fork safe (Python threads were checked in `maybe`)
                warnings.filterwarnings("ignore", ".*multi-threaded.*", DeprecationWarning)
                for _ in range(size):
                    self.workers.append(_Worker(ctx, source, progress))
        except BaseException:
            self.close()
            raise

    @classmethod
    def maybe(
        cls,
        source: LatentSource,
        threads: int,
        progress: Callable[[int], None] | None = None,
    ) -> WorkerPool | None:
        """Return a pool of `threads - 1` workers, or None where threads serve as well.

        None on one core, off Linux (see :func:`processes_available`), for data sets
        under :data:`PROCESS_MIN_VALUES` values, when the calling program runs other
        Python threads (a thread holding a lock at the fork could deadlock the child),
        inside a daemonic process (a pool worker, which may not have children), for data
        read through a library (HDF5, zarr; see :attr:`LatentSource.fork_safe`), and when
        the system refuses the fork.
        """
        import multiprocessing

        if (
            threads < 2
            or not processes_available()
            or _other_threads()
            or multiprocessing.current_process().daemon  # may not have children
            or not source.fork_safe
            or source.n_rows * source.n_dims < PROCESS_MIN_VALUES
        ):
            return None
        try:
            return cls(source, threads - 1, progress)
        except OSError:  # fork refused (no memory under strict overcommit, process limits)
            return None

    def close(self) -> None:
        """Stop the workers (idle ones exit; busy ones are terminated)."""
        for w in self.workers:
            w.close()
        self.workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _other_threads() -> bool:
    """Return True if Python threads besides this one run (zarr's I/O threads, a host's)."""
    import threading

    return threading.active_count() > 1


class _Worker:
    """One forked worker process and the parent's end of its pipe."""

    def __init__(
        self, ctx: Any, source: LatentSource, progress: Callable[[int], None] | None
    ) -> None:
        self._conn, child_end = ctx.Pipe()
        self._proc = ctx.Process(
            target=_worker_main, args=(source, progress, child_end), daemon=True
        )
        self._proc.start()
        child_end.close()
        self._pending = False

    def submit(self, make: Callable[[], Any], spans: list[tuple[int, int]]) -> _Worker:
        """Send a job: stream `spans` into ``make()``; :meth:`result` returns it."""
        self._conn.send((make, spans))
        self._pending = True
        return self

    def result(self) -> Any:
        """Wait for the job; return its accumulator or re-raise its exception."""
        try:
            ok, value = self._conn.recv()
        except EOFError:
            self._proc.join()
            code = self._proc.exitcode
            how = f"exit code {code}"
            if code is not None and code < 0:
                import signal

                how = f"killed by {signal.Signals(-code).name}"
                if -code == signal.SIGKILL:
                    how += ", perhaps by the kernel for want of memory"
            raise RuntimeError(
                f"A latentcheck worker process ended without a result ({how})"
            ) from None
        finally:
            self._pending = False
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the worker (another worker failed)."""
        self.close()

    def close(self) -> None:
        """Ask an idle worker to exit; terminate a busy one."""
        if self._proc.is_alive():
            if self._pending:
                self._proc.terminate()
            else:
                try:
                    self._conn.send(None)
                except OSError:
                    self._proc.terminate()
        self._proc.join()
        self._conn.close()


def _worker_main(source: LatentSource, progress: Callable[[int], None] | None, conn: Any) -> None:
    """Serve jobs in the forked child until told to stop.

    Ctrl-C reaches the whole process group: the parent handles it and stops its workers,
    so they ignore SIGINT rather than print a traceback each.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        make, spans = job
        try:
            msg: tuple[bool, Any] = (True, _stream(source, make, spans, progress))
        except BaseException as exc:  # the parent re-raises it
            msg = (False, exc)
        try:
            conn.send(msg)
        except OSError:  # the parent has gone
            return
        except Exception as exc:  # an exception that does not pickle
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _stream(
    source: LatentSource,
    make: Callable[[], Any],
    spans: list[tuple[int, int]],
    progress: Callable[[int], None] | None,
) -> Any:
    """Stream the item ranges `spans` of `source` into ``make()`` and return it."""
    acc = make()
    for start, stop in spans:
        acc.push(source.read_items(start, stop), start * source.rows_per_item)
        if progress is not None:
            progress(stop - start)
    finish = getattr(acc, "finish", None)
    if finish is not None:  # in the worker: off the caller's critical path
        finish()
    return acc


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


@dataclass(frozen=True)
class SecondPassFactory:
    """Makes empty :class:`SecondPass` accumulators; pickles, for worker processes.

    `joint` and `spatial` (each optional) make the second-pass extras: the joint
    accumulator, and a dict of spatial accumulators for conv sources.
    """

    levels: tuple[float, ...]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    dtype: np.dtype[Any]
    joint: Callable[[], PushAccumulator] | None = None
    spatial: Callable[[], Mapping[str, PushAccumulator]] | None = None

    def __call__(self) -> SecondPass:
        extras: dict[str, PushAccumulator] = {}
        if self.joint is not None:
            extras["joint"] = self.joint()
        if self.spatial is not None:
            extras.update(self.spatial())
        return SecondPass(self.levels, self.mean, self.std, self.dtype, extras=extras)


class PassHandle:
    """A pass running on workers; :meth:`result` waits and merges in order."""

    def __init__(self, futures: list[Any], cleanup: Callable[[], None]) -> None:
        self._futures = futures
        self._cleanup = cleanup
        self._result: Any = None
        self._done = False

    def result(self) -> Any:
        """Return the merged accumulator (re-raising a worker's exception)."""
        if not self._done:
            try:
                parts = [f.result() for f in self._futures]
            except BaseException:
                _cancel(self._futures)
                raise
            finally:
                self._cleanup()
                self._done = True
            out = parts[0]
            for part in parts[1:]:
                out = out.merge(part)
            self._result = out
        return self._result

    def cancel(self) -> None:
        """Stop the pass without its result (the caller failed meanwhile).

        A deferred run of the caller's own is not started; worker processes are
        terminated, worker threads finish their runs.
        """
        if not self._done:
            self._done = True
            try:
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
    caller_share: float = 1.0,
    defer: bool = False,
) -> PassHandle:
    """Start streaming `source` over `ranges` into accumulators from `make()`.

    The ranges are split into contiguous runs, one per worker; the workers' accumulators
    are merged in order, so the result does not depend on scheduling. The caller may
    work meanwhile (numpy and BLAS release the GIL in worker threads).

    With a `pool`, its processes are the workers (and `make` must pickle); otherwise
    `threads` worker threads. With `in_caller` the caller computes the first run itself
    as one more worker, a run of `caller_share` times a worker's length: before
    returning or, with `defer`, when it first asks for the :meth:`PassHandle.result` (so
    that it can do other work first).
    """
    background = len(pool.workers) if pool is not None else threads
    weights = [caller_share] * int(in_caller) + [1.0] * background
    runs = _split(ranges, weights, keep_first=in_caller)
    own = runs.pop(0) if in_caller else None

    blas = _single_threaded_blas()
    blas.__enter__()
    futures: list[Any]
    cleanup: Callable[[], None]
    try:
        if pool is not None:
            futures = [w.submit(make, r) for w, r in zip(pool.workers, runs, strict=False)]
            cleanup = blas.__exit__
        else:
            executor = ThreadPoolExecutor(
                max_workers=max(1, len(runs)), thread_name_prefix="latentcheck"
            )
            futures = [executor.submit(_stream, source, make, r, progress) for r in runs]

            def shutdown() -> None:
                executor.shutdown(wait=True)
                blas.__exit__()

            cleanup = shutdown

    except BaseException:
        blas.__exit__()
        raise
    if own is not None:
        caller = _Caller(lambda: _stream(source, make, own, progress))
        futures.insert(0, caller)
        if not defer:
            try:
                caller.result()
            except BaseException:
                _cancel(futures)
                cleanup()
                raise
    return PassHandle(futures, cleanup)


def _split(
    ranges: list[tuple[int, int]], weights: list[float], *, keep_first: bool
) -> list[list[tuple[int, int]]]:
    """Split `ranges` into contiguous runs with lengths in proportion to `weights`.

    Empty runs are dropped, except the first one with `keep_first` (the caller's).
    """
    bounds = np.cumsum([0.0, *weights]) / sum(weights) * len(ranges)
    cuts = np.rint(bounds).astype(int)
    runs = [ranges[a:b] for a, b in itertools.pairwise(cuts)]
    return [r for k, r in enumerate(runs) if r or (keep_first and k == 0)]


def _cancel(futures: list[Any]) -> None:
    """Cancel the workers that have not finished (threads finish their current run)."""
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
    ).result()


class _single_threaded_blas:
    """Limit BLAS to one thread while our own worker threads run (no oversubscription)."""

    def __enter__(self) -> None:
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        self._limits.restore_original_limits()
