"""The two streaming passes over a data set, fused per chunk and run on parallel workers.

Pass 1 accumulates moments, co-moments and the seeded sample of rows; pass 2 counts
exceedances that need the final mean and std, finds the extremes from the values beyond
those thresholds (and, when given, runs further second-pass accumulators such as
Mahalanobis distances).

A pass is cut into segments of consecutive chunks, fixed by the number of chunks alone.
Workers (forked processes on Linux, else threads; the caller too, when it has time) take
segments one at a time from a shared queue, so that a worker that started late or ran
slower simply takes fewer; each segment goes into a fresh accumulator, and the segments'
accumulators are merged in segment order. The result is thus the same, to the last bit,
whichever worker took which segment, and however many workers there were.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .accumulate import (
    Beyond,
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    NonFinite,
    Reservoir,
    Scratch,
    TileCache,
    column_sums,
    sparse_flatnonzero,
)
from .loading import LatentSource

F64 = NDArray[np.float64]

__all__ = [
    "MAX_SEGMENTS",
    "FirstPass",
    "PassHandle",
    "SecondPass",
    "SecondPassFactory",
    "WorkerPool",
    "default_chunk_rows",
    "default_threads",
    "processes_available",
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


def _finite_rows(
    block: NDArray[Any], row_start: int, nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64] | None]:
    """Return (block without non-finite rows, their row ids or None if all kept).

    The column sums are a cheap finiteness check (sklearn's _assert_all_finite does the
    same with a sum): only a non-finite sum triggers the exact elementwise scan.
    """
    if np.isfinite(column_sums(block)).all():
        return block, None
    return _drop_nonfinite(block, row_start, nonfinite)


def _drop_nonfinite(
    block: NDArray[Any], row_start: int, nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64] | None]:
    """Return what :func:`_finite_rows` does, for a block whose column sums are not finite."""
    finite = np.isfinite(block)
    rows_ok = finite.all(axis=1)
    if rows_ok.all():  # finite values whose sum overflowed the input dtype
        return block, None
    if nonfinite is not None:
        nonfinite.push_mask(finite, row_start)
    keep = np.flatnonzero(rows_ok)
    return block[keep], row_start + keep.astype(np.int64)


class PushAccumulator(Protocol):
    """A second-pass accumulator: takes a finite block and its global row ids."""

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add the rows of a block."""

    def merge(self, other: Any) -> Any:
        """Return the merge of two accumulators."""


def _widen(block: NDArray[Any], out: NDArray[np.float64]) -> tuple[NDArray[np.float64], F64]:
    """Return the rows of `block` in float64 and their column sums.

    A float64 block is returned as is; any other is copied (exactly) into `out`, the
    float64 block that :func:`_centre` then centres in place. Summed from the float64
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


def _centre(rows: NDArray[np.float64], shift: F64, out: NDArray[np.float64]) -> None:
    """Write ``rows - shift`` into `out` (which may be `rows`), float64 row by row.

    A broadcast row gives numpy inner loops of d elements; the rows viewed k at a time
    give inner loops of k·d elements against the shift tiled k times: the same bits,
    0.1 ms less per 4096 x 64 chunk with the float32 copy of :func:`_widen`.
    """
    n, d = rows.shape
    k = math.gcd(n, 64)
    np.subtract(rows.reshape(n // k, k * d), np.tile(shift, k), out=out.reshape(n // k, k * d))


def _column_dots(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``Σ_i a_ij b_ij`` for each column j of two C-contiguous (n, d) blocks.

    Viewed k rows at a time (k = gcd(n, 64)), numpy's inner loops run over k·d elements
    instead of d, and the k partial sums per column add up at the end: 0.065 ms instead
    of 0.076 ms per 4096 x 64 block.
    """
    n, d = a.shape
    k = math.gcd(n, 64)
    wide = np.einsum("ij,ij->j", a.reshape(n // k, k * d), b.reshape(n // k, k * d))
    out: NDArray[np.float64] = wide.reshape(k, d).sum(axis=0)
    return out


class FirstPass:
    """Moments, co-moments, non-finite counts and the sample, fused per chunk.

    Each chunk's power sums wait in a list and join the moments a batch at a time
    (:meth:`Moments.push_many`): merging every chunk on its own took 40 us of small numpy
    calls per chunk, 4% of the pass. :attr:`moments` and :attr:`comoments` add what waits.
    """

    #: chunks whose sums wait at most (bounds the list when no segment ends it)
    BATCH_CHUNKS = 256

    def __init__(
        self,
        n_dims: int,
        *,
        dtype: np.dtype[Any],
        seed: int,
        sample_size: int,
        covariance: bool,
        key_threshold: int | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        self._scratch = Scratch() if scratch is None else scratch
        self._moments = Moments(n_dims)
        self._comoments = Comoments(n_dims) if covariance else None
        self.nonfinite = NonFinite(n_dims)
        self.reservoir = Reservoir(sample_size, n_dims, seed, dtype, threshold=key_threshold)
        # per waiting chunk: rows, shift, and its sums of (x - shift)^p for p = 1..4
        self._waiting: list[tuple[int, F64, F64, F64, F64, F64]] = []
        self._gram: F64 | None = None  # the sum of the waiting chunks' grams

    @property
    def moments(self) -> Moments:
        """Count, mean and central moment sums of every row pushed so far."""
        self._add_waiting()
        return self._moments

    @property
    def comoments(self) -> Comoments | None:
        """Co-moments of every row pushed so far (None without covariance)."""
        self._add_waiting()
        return self._comoments

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        n, d = block.shape
        if n == 0:
            return
        dev, sq = self._scratch.get(2, n, d)
        rows, sums = _widen(block, dev)
        row_ids = None
        if not np.isfinite(sums).all():  # leave out the rows holding NaN or inf
            block, row_ids = _drop_nonfinite(block, row_start, self.nonfinite)
            n = block.shape[0]
            if n == 0:
                return
            dev, sq = self._scratch.get(2, n, d)
            rows, sums = _widen(block, dev)
        if row_ids is None:
            row_ids = np.arange(row_start, row_start + n, dtype=np.int64)
        # the shift is the chunk mean to float64 summation error, so that the sums of
        # powers about it do not cancel; s1 = Σ (x − shift) then makes the mean good to
        # eps·std (s1 = Σ x − n·shift would leave it at eps·|mean|·sqrt(n), which cost
        # the skewness five digits at |mean| = 3e6 std)
        shift = sums / n
        _centre(rows, shift, dev)
        s1 = column_sums(dev)
        np.multiply(dev, dev, out=sq)
        if self._comoments is not None:
            gram = dev.T @ dev
            s2 = np.diagonal(gram).copy()
            if self._gram is None:
                self._gram = gram
            else:
                self._gram += gram
        else:
            s2 = column_sums(sq)
        s3 = _column_dots(sq, dev)
        s4 = _column_dots(sq, sq)
        self._waiting.append((n, shift, s1, s2, s3, s4))
        if len(self._waiting) >= self.BATCH_CHUNKS:
            self._add_waiting()
        self.reservoir.push(block, row_ids)

    def _add_waiting(self) -> None:
        """Add the waiting chunks' sums to the moments and co-moments."""
        if not self._waiting:
            return
        ns = np.array([w[0] for w in self._waiting], dtype=np.float64)
        shift, s1, s2, s3, s4 = (np.array([w[k] for w in self._waiting]) for k in range(1, 6))
        self._waiting = []
        self._moments.push_many(ns, shift, s1, s2, s3, s4)
        if self._comoments is not None and self._gram is not None:
            self._comoments.push_many(ns, shift, s1, self._gram)
        self._gram = None

    def finish(self) -> None:
        """Add the waiting sums; compact the segment's sample into one sorted block."""
        self._add_waiting()
        self.reservoir.finalize()

    def merge(self, other: FirstPass) -> FirstPass:
        """Merge `other` into self (in place) and return self."""
        self._moments = self.moments.merge(other.moments)
        mine, theirs = self.comoments, other.comoments
        if mine is not None and theirs is not None:
            self._comoments = mine.merge(theirs)
        self.nonfinite = self.nonfinite.merge(other.nonfinite)
        self.reservoir = self.reservoir.merge(other.reservoir)
        return self


class SecondPass:
    """Exceedance counts about the final mean/std and against the prior, extremes, extras.

    The extremes come from the values beyond the exceedance thresholds, which pass 2
    finds anyway (see :meth:`Extremes.push_beyond`): in pass 1 they cost a fold of every
    chunk.
    """

    def __init__(
        self,
        levels: Sequence[float],
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        dtype: np.dtype[Any],
        extras: Mapping[str, PushAccumulator] | None = None,
        tiles: TileCache | None = None,
        finite: bool = False,
        scratch: Scratch | None = None,
    ) -> None:
        # `finite`: the first pass found no NaN or inf, so chunks skip the check
        self.finite = finite
        self.centered = Exceedance(levels, mean, std, dtype)
        self.prior = Exceedance(levels, np.zeros_like(mean), np.ones_like(std), dtype)
        self.extremes = Extremes(mean.shape[0], scratch)
        self.extras: dict[str, Any] = dict(extras or {})
        # one comparison per side finds the candidates of both counts: beyond the looser
        # of their lowest thresholds (both exact in the data's dtype)
        self._hi = np.minimum(
            self.centered.thresholds(upper=True), self.prior.thresholds(upper=True)
        )
        self._lo = np.maximum(
            self.centered.thresholds(upper=False), self.prior.thresholds(upper=False)
        )
        # a factory shares one cache between the accumulators of its segments
        self._tiles = TileCache() if tiles is None else tiles

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        row_ids = None
        if not self.finite:
            block, row_ids = _finite_rows(block, row_start, None)
        n, d = block.shape
        if n == 0:
            return
        hi, lo = self._tiles.get(n, self._hi, self._lo)
        flat = block.reshape(-1)
        above = Beyond.gather(flat, d, sparse_flatnonzero(block > hi))
        below = Beyond.gather(flat, d, sparse_flatnonzero(block < lo))
        self.centered.push_beyond(n, above, below)
        self.prior.push_beyond(n, above, below)
        self.extremes.push_beyond(block, above, below)
        if self.extras:
            if row_ids is None:
                row_ids = np.arange(row_start, row_start + block.shape[0], dtype=np.int64)
            for acc in self.extras.values():
                acc.push(block, row_ids)

    def finish(self) -> None:
        """Count the exceedances still waiting (before the segment's state is sent)."""
        self.centered.count_waiting()
        self.prior.count_waiting()

    def merge(self, other: SecondPass) -> SecondPass:
        """Merge `other` into self (in place) and return self."""
        self.centered = self.centered.merge(other.centered)
        self.prior = self.prior.merge(other.prior)
        self.extremes = self.extremes.merge(other.extremes)
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
    factory and the segments) and results travel pickled through the pipes between this
    process and its own children, never through files. The queue of segments is one
    more pipe, shared by all (see :class:`_Tokens`).
    """

    def __init__(
        self,
        source: LatentSource,
        size: int,
        progress: Callable[[int], None] | None = None,
        arena_bytes: int = 0,
    ) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        self.tokens = _PipeTokens()
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
                    arena = _Arena(arena_bytes)
                    self.workers.append(_Worker(ctx, source, progress, self.tokens, arena))
        except BaseException:
            self.close()
            raise

    @classmethod
    def maybe(
        cls,
        source: LatentSource,
        threads: int,
        progress: Callable[[int], None] | None = None,
        arena_bytes: int = 0,
    ) -> WorkerPool | None:
        """Return a pool of `threads - 1` workers, or None where threads serve as well.

        `arena_bytes` is the size of each worker's shared memory for its large results
        (see :class:`_Arena`); it is only reserved, and pages are used as they are written.

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
            return cls(source, threads - 1, progress, arena_bytes)
        except OSError:  # fork refused (no memory under strict overcommit, process limits)
            return None

    def close(self) -> None:
        """Stop the workers (idle ones exit; busy ones are terminated)."""
        for w in self.workers:
            w.close()
        self.workers = []
        self.tokens.close()

    def release_shared(self) -> None:
        """Give back the shared memory of results once their arrays are dropped (or copied).

        Each worker unmaps its side at its next job, which then returns its results
        pickled; a map that still backs an array here is kept.
        """
        for w in self.workers:
            w.arena.close()

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
        self,
        ctx: Any,
        source: LatentSource,
        progress: Callable[[int], None] | None,
        tokens: _Tokens,
        arena: _Arena,
    ) -> None:
        self._conn, child_end = ctx.Pipe()
        self.arena = arena
        self._proc = ctx.Process(
            target=_worker_main,
            args=(source, progress, tokens, arena, child_end, os.getpid()),
            daemon=True,
        )
        self._proc.start()
        child_end.close()
        self._pending = False

    def submit(
        self, make: Callable[[], Any], segments: list[list[tuple[int, int]]], shared: bool = False
    ) -> _Worker:
        """Send a job: take segments from the queue until it is empty (see `_participate`).

        With `shared`, large arrays of the result come back through the worker's arena;
        without, the worker gives up its arena (after :meth:`WorkerPool.release_shared`).
        """
        self._conn.send((make, segments, shared and not self.arena.closed))
        self._pending = True
        return self

    def result(self) -> Any:
        """Wait for the job; return its (segment, accumulator) pairs or re-raise its error."""
        try:
            data = self._conn.recv_bytes()
        except EOFError:
            self._pending = False
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
        # idle only once its whole result is read: interrupted before (Ctrl-C), the worker
        # may still be writing it, and close() must then terminate it rather than wait
        self._pending = False
        ok, value = self.arena.loads(data)
        if not ok:
            raise value
        packed, parts = value
        if packed:
            return [(i, self.arena.loads(part)) for i, part in parts]
        return parts

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


def _worker_main(
    source: LatentSource,
    progress: Callable[[int], None] | None,
    tokens: _Tokens,
    arena: _Arena,
    conn: Any,
    parent: int,
) -> None:
    """Serve jobs in the forked child until told to stop.

    Ctrl-C reaches the whole process group: the parent handles it and stops its workers,
    so they ignore SIGINT rather than print a traceback each. A parent that dies without
    stopping them (SIGKILL, SIGTERM) takes them along (see :func:`_die_with_parent`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        make, segments, shared = job
        if not shared:
            arena.close()  # the parent has given it up, or will not read it for this job

        def pack(acc: Any) -> bytes:
            return bytes(arena.dumps(acc))

        try:
            # with shared results (the first pass: samples), each segment's accumulator is
            # pickled as soon as it ends, while the parent still streams; done all at the
            # end, it kept both processes waiting 17 ms between the passes. Other jobs'
            # accumulators share objects (the second pass's whitening), which one pickle
            # of all of them writes once
            parts = _participate(
                source, make, segments, tokens, progress, pack=pack if shared else None
            )
            msg: tuple[bool, Any] = (True, (shared, parts))
        except BaseException as exc:  # the parent re-raises it
            msg = (False, exc)
        try:
            conn.send_bytes(arena.dumps(msg, shared))
        except OSError:  # the parent has gone
            return
        except Exception as exc:  # an exception that does not pickle
            error = RuntimeError(f"{type(exc).__name__}: {exc}")
            conn.send_bytes(arena.dumps((False, error), shared))


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when `parent` dies (Linux ``PR_SET_PDEATHSIG``).

    A worker busy in a segment waits on no pipe of the parent, so a parent killed by
    SIGKILL or SIGTERM (which skips its cleanup) would leave it running to the end of its
    job and then blocked on the shared segment queue forever (issue 20). prctl(2):
    ``PR_SET_PDEATHSIG`` (1) sends the signal when the thread that forked this process
    ends; the check of the parent's pid after it closes the race of a parent that died
    before the call.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl Linux
        pass
    if os.getppid() != parent:
        os._exit(1)


#: Arrays of at least this size travel back from workers through their arena.
ARENA_MIN_BYTES = 1 << 17


class _Arena:
    """Shared memory through which a worker returns its large arrays (the sample's rows).

    Pickling a worker's 20 MB of sample rows, pushing them through a pipe and unpickling
    them took 0.07 s between the passes, with both processes waiting. Arrays of at least
    ARENA_MIN_BYTES are instead copied into this map, which the worker shares with its
    parent since the fork, and pickled as their place in it; the parent reads them in
    place. The worker only appends, so nothing the parent holds is overwritten; once the
    map is full, arrays are pickled as usual. Untouched pages cost no memory.
    """

    def __init__(self, nbytes: int) -> None:
        import mmap

        self._map = mmap.mmap(-1, max(int(nbytes), mmap.PAGESIZE))  # shared, anonymous
        self._used = 0  # written by the worker only
        self.closed = False

    def close(self) -> bool:
        """Unmap this process's side, unless arrays here still use it; return success.

        The memory is freed once both the worker and its parent have closed their side.
        """
        if not self.closed:
            try:
                self._map.close()
            except BufferError:  # a view of the map is alive: keep it
                return False
            self.closed = True
        return True

    def put(self, a: NDArray[Any]) -> int | None:
        """Copy `a` into the map (in the worker); return its offset, or None if full."""
        start = -(-self._used // 64) * 64
        if self.closed or start + a.nbytes > len(self._map):
            return None
        self._view(start, a.dtype, a.shape)[...] = a
        self._used = start + a.nbytes
        return start

    def _view(self, offset: int, dtype: Any, shape: tuple[int, ...]) -> NDArray[Any]:
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self._map, dtype, count, offset).reshape(shape)

    def dumps(self, obj: Any, use_map: bool = True) -> memoryview:
        """Pickle `obj`, placing its large numeric arrays in the map if `use_map`."""
        import io
        import pickle

        arena = self

        class Pickler(pickle.Pickler):
            def persistent_id(self, o: Any) -> Any:
                if (
                    use_map
                    and type(o) is np.ndarray
                    and o.nbytes >= ARENA_MIN_BYTES
                    and o.dtype.kind in "biufc"
                    and (offset := arena.put(o)) is not None
                ):
                    return (offset, o.dtype.str, o.shape)
                return None

        buf = io.BytesIO()
        Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return buf.getbuffer()

    def loads(self, data: bytes) -> Any:
        """Unpickle what :meth:`dumps` wrote (in the parent): arrays are views of the map."""
        import io
        import pickle

        arena = self

        class Unpickler(pickle.Unpickler):
            def persistent_load(self, pid: Any) -> Any:
                offset, dtype, shape = pid
                return arena._view(offset, np.dtype(dtype), tuple(shape))

        return Unpickler(io.BytesIO(data)).load()


class _Tokens(Protocol):
    """The queue of a pass's segments: each index is taken by exactly one worker."""

    def fill(self, count: int) -> None:
        """Queue the segment indices 0 .. count - 1 (the queue must be empty)."""

    def take(self) -> int | None:
        """Return the next segment index, or None when none is left."""

    def drain(self) -> None:
        """Empty the queue: workers stop after their current segment."""


class _PipeTokens:
    """A queue of segment indices that forked processes share: a non-blocking pipe.

    Each index is written as 4 bytes, all in one write before the workers start (at most
    MAX_SEGMENTS * 4 = 256 bytes, below PIPE_BUF, so the write is atomic). A 4-byte read
    takes exactly one index: the kernel serialises readers of a pipe. Unlike a shared
    counter under a semaphore, this needs no /dev/shm.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)

    def fill(self, count: int) -> None:
        self.drain()  # whatever an interrupted pass left
        data = np.arange(count, dtype="<u4").tobytes()
        if os.write(self._write, data) != len(data):  # pragma: no cover - below PIPE_BUF
            raise OSError("short write to the segment queue")

    def take(self) -> int | None:
        try:
            got = os.read(self._read, 4)
        except BlockingIOError:
            return None
        return int.from_bytes(got, "little") if len(got) == 4 else None

    def drain(self) -> None:
        while self.take() is not None:
            pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - already closed
                pass


class _ThreadTokens:
    """The queue of segment indices for worker threads of one process."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._next = 0
        self._count = 0

    def fill(self, count: int) -> None:
        with self._lock:
            self._next, self._count = 0, count

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self._count:
                return None
            self._next += 1
            return self._next - 1

    def drain(self) -> None:
        with self._lock:
            self._next = self._count


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
    # its first call imports numpy.ma, 8 ms between the fork and the first job)
    segs = [ranges[a:b] for a, b in itertools.pairwise(cuts.astype(np.int64).tolist()) if b > a]
    return segs or [[]]


def _participate(
    source: LatentSource,
    make: Callable[[], Any],
    segments: list[list[tuple[int, int]]],
    tokens: _Tokens,
    progress: Callable[[int], None] | None,
    pack: Callable[[Any], Any] | None = None,
) -> list[tuple[int, Any]]:
    """Stream segments taken from `tokens` until none is left; return (index, accumulator).

    Each segment gets a fresh accumulator, so that what a worker returns does not depend
    on which other segments it took. `pack`, if given, turns each finished accumulator
    into what is returned in its place (a worker process pickles it).
    """
    out = []
    try:
        while (i := tokens.take()) is not None:
            acc = make()
            for start, stop in segments[i]:
                acc.push(source.read_items(start, stop), start * source.rows_per_item)
                if progress is not None:
                    progress(stop - start)
            finish = getattr(acc, "finish", None)
            if finish is not None:  # on the worker that streamed the segment
                finish()
            out.append((i, acc if pack is None else pack(acc)))
    except BaseException:
        tokens.drain()  # the others stop after their current segment
        raise
    return out


def merge_in_order(parts: Sequence[tuple[int, Any]]) -> Any:
    """Merge the segments' accumulators in segment order (the result's only order)."""
    ordered = sorted(parts, key=lambda p: p[0])
    out = ordered[0][1]
    for _, acc in ordered[1:]:
        out = out.merge(acc)
    return out


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
    #: thresholds tiled to chunks, shared by the segments' accumulators (pickles empty)
    tiles: TileCache = field(default_factory=TileCache, compare=False, repr=False)
    #: the first pass found every value finite: chunks skip the check (a column sum each)
    finite: bool = False
    #: blocks for the extremes' rare full folds, shared by the segments' accumulators
    scratch: Scratch = field(default_factory=Scratch, compare=False, repr=False)

    def __call__(self) -> SecondPass:
        extras: dict[str, PushAccumulator] = {}
        if self.joint is not None:
            extras["joint"] = self.joint()
        if self.spatial is not None:
            extras.update(self.spatial())
        return SecondPass(
            self.levels,
            self.mean,
            self.std,
            self.dtype,
            extras=extras,
            tiles=self.tiles,
            finite=self.finite,
            scratch=self.scratch,
        )


class PassHandle:
    """A pass running on workers; :meth:`result` waits and merges in order."""

    def __init__(self, futures: list[Any], tokens: _Tokens, cleanup: Callable[[], None]) -> None:
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
            self._result = merge_in_order(parts)
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
) -> PassHandle:
    """Start streaming `source` over `ranges` into accumulators from `make()`.

    The ranges are cut into segments (:func:`segments_of`) that the workers take from a
    shared queue; :meth:`PassHandle.result` merges the segments' accumulators in order,
    so the result does not depend on scheduling or on the number of workers.

    With a `pool`, its processes are the workers (and `make` must pickle); otherwise
    `threads` worker threads. With `in_caller` the caller takes segments too: before
    returning or, with `defer`, when it first asks for :meth:`PassHandle.result` (so that
    it can do other work first while the workers stream). With `shared_results`, worker
    processes return their large arrays through shared memory (see :class:`_Arena`).
    `max_segments` bounds the accumulators held until the merge (see :func:`segment_cap`).
    """
    segments = segments_of(ranges, max_segments)
    tokens: _Tokens = pool.tokens if pool is not None else _ThreadTokens()
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
                executor.submit(_participate, source, make, segments, tokens, progress)
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
        caller = _Caller(lambda: _participate(source, make, segments, tokens, progress))
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
    each threadpoolctl limit walks every loaded library, 5 ms once scipy is loaded, and
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
