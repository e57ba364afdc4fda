"""Worker processes forked for a pass: the pool, its pipes and its shared memory.

Each worker reads its chunks of the file itself and sends back only its segments'
accumulators (through a pipe, large arrays through a shared map); the queue of segments
is one more pipe shared by all (:class:`PipeTokens`). Which segments a worker takes
never changes the result: each segment goes into a fresh accumulator and the segments
are merged along a tree of fixed shape (:func:`~latentcheck.engine.segments.merge_tree`).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..io.latents import LatentSource
from .executor import current_executor
from .segments import Tokens, participate

__all__ = [
    "ARENA_MIN_BYTES",
    "PROCESS_MIN_VALUES",
    "Arena",
    "PipeTokens",
    "Worker",
    "WorkerPool",
    "processes_available",
]


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
    Python (tests on the sample), a worker thread's pass 2 took more than twice its CPU
    time in wall time, each of its thousands of numpy calls queueing for the GIL.

    The workers are forked before the analysis allocates anything large, so they share
    little with the parent that it could later copy-on-write; jobs (an accumulator
    factory and the segments) and results travel pickled through the pipes between this
    process and its own children, never through files. The queue of segments is one
    more pipe, shared by all (see :class:`Tokens`).
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
        self.workers: list[Worker] = []
        self.tokens = PipeTokens()
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
                    arena = Arena(arena_bytes)
                    self.workers.append(Worker(ctx, source, progress, self.tokens, arena))
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
        (see :class:`Arena`); it is only reserved, and pages are used as they are written.

        None on one core, off Linux (see :func:`processes_available`), for data sets
        under :data:`PROCESS_MIN_VALUES` values, when the calling program runs other
        Python threads (a thread holding a lock at the fork could deadlock the child),
        inside a daemonic process (a pool worker, which may not have children), for data
        read through a library (HDF5, zarr; see :attr:`LatentSource.fork_safe`), and when
        the system refuses the fork.
        """
        if (
            threads < 2
            or source.n_rows * source.n_dims < PROCESS_MIN_VALUES
            or current_executor() is not None  # the executor's workers run the passes
            or not processes_available()
            or other_threads()
            or not source.fork_safe
        ):
            return None
        import multiprocessing  # here: a small input does not import it (issue 22)

        if multiprocessing.current_process().daemon:  # may not have children
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


def other_threads() -> bool:
    """Return True if Python threads besides this one run (zarr's I/O threads, a host's)."""
    import threading

    return threading.active_count() > 1


class Worker:
    """One forked worker process and the parent's end of its pipe."""

    def __init__(
        self,
        ctx: Any,
        source: LatentSource,
        progress: Callable[[int], None] | None,
        tokens: Tokens,
        arena: Arena,
    ) -> None:
        self._conn, child_end = ctx.Pipe()
        self.arena = arena
        self._proc = ctx.Process(
            target=worker_main,
            args=(source, progress, tokens, arena, child_end, os.getpid()),
            daemon=True,
        )
        self._proc.start()
        child_end.close()
        self._pending = False

    def submit(
        self, make: Callable[[], Any], segments: list[list[tuple[int, int]]], shared: bool = False
    ) -> Worker:
        """Send a job: take segments from the queue until it is empty (see `participate`).

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
            raise rebuild_error(*value)
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


def worker_main(
    source: LatentSource,
    progress: Callable[[int], None] | None,
    tokens: Tokens,
    arena: Arena,
    conn: Any,
    parent: int,
) -> None:
    """Serve jobs in the forked child until told to stop.

    Ctrl-C reaches the whole process group: the parent handles it and stops its workers,
    so they ignore SIGINT rather than print a traceback each. A parent that dies without
    stopping them (SIGKILL, SIGTERM) takes them along (see :func:`die_with_parent`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
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
            # end, it kept both processes waiting between the passes. Other jobs'
            # accumulators share objects (the second pass's whitening), which one pickle
            # of all of them writes once
            parts = participate(
                source, make, segments, tokens, progress, pack=pack if shared else None
            )
            msg: tuple[bool, Any] = (True, (shared, parts))
        except BaseException as exc:  # the parent re-raises it
            msg = (False, (type(exc), exc.args, str(exc)))
        try:
            conn.send_bytes(arena.dumps(msg, shared))
        except OSError:  # the parent has gone
            return
        except Exception as exc:  # an exception class that does not pickle
            error = (RuntimeError, (f"{type(exc).__name__}: {exc}",), str(exc))
            conn.send_bytes(arena.dumps((False, error), shared))


def rebuild_error(cls: type[BaseException], args: tuple[Any, ...], text: str) -> BaseException:
    """Return a worker's exception, rebuilt here from its class and arguments.

    A worker sends its error as (class, args, message), not as a pickled exception: an
    exception pickles through whatever reducer a library installed (tblib's, with dask),
    which names functions that :func:`worker_result_class` refuses. A class whose
    constructor does not take its own args back becomes a RuntimeError with the message.
    """
    try:
        return cls(*args)
    except Exception:
        return RuntimeError(f"{cls.__name__}: {text}")


def die_with_parent(parent: int) -> None:
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


class Arena:
    """Shared memory through which a worker returns its large arrays (the sample's rows).

    Pickling a worker's megabytes of sample rows, pushing them through a pipe and
    unpickling them took time between the passes, with both processes waiting. Arrays of at least
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

            def find_class(self, module: str, name: str) -> Any:
                return worker_result_class(module, name)

        return Unpickler(io.BytesIO(data)).load()


#: builtins a worker's result may name besides exception classes
_RESULT_BUILTINS = frozenset({"complex", "slice", "range", "set", "frozenset", "bytearray"})
#: numpy's functions that rebuild arrays, scalars and buffers in its pickles
_NUMPY_REBUILDERS = frozenset({"_reconstruct", "scalar", "_frombuffer"})
#: the methods the engine calls on every accumulator a pass makes (a class with them is one)
_ACCUMULATOR_METHODS = ("push", "finish")


def worker_result_class(module: str, name: str) -> Any:
    """Return the class a worker's pickled result names, if it is one a result may hold.

    The pickles come only from this process's own forked workers, never from a file; still,
    the parent resolves no name beyond what a result needs: numpy's and latentcheck's own
    classes and numpy's array rebuilders, a few builtin types, exception classes (a
    worker's error is re-raised here) and accumulator classes (:mod:`~latentcheck.engine.
    protocol`, also those a caller defines), all from modules already imported, so that a
    result never makes the parent import anything. Functions (``numpy.load``, ``eval``…)
    and any other name are refused with :class:`pickle.UnpicklingError`.
    """
    import pickle

    found = sys.modules.get(module)
    obj = getattr(found, name, None) if found is not None and "." not in name else None
    top = module.partition(".")[0]
    if obj is None:
        pass
    elif isinstance(obj, type):
        if top in ("latentcheck", "numpy") or issubclass(obj, BaseException):
            return obj
        if module == "builtins" and name in _RESULT_BUILTINS:
            return obj
        if all(callable(getattr(obj, m, None)) for m in _ACCUMULATOR_METHODS):
            return obj
    elif top == "numpy" and name in _NUMPY_REBUILDERS:
        return obj
    raise pickle.UnpicklingError(f"a worker's result may not name {module}.{name}")


class PipeTokens:
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
        """Queue the segment indices 0 .. count - 1, in one atomic write."""
        self.drain()  # whatever an interrupted pass left
        data = np.arange(count, dtype="<u4").tobytes()
        if os.write(self._write, data) != len(data):  # pragma: no cover - below PIPE_BUF
            raise OSError("short write to the segment queue")

    def take(self) -> int | None:
        """Return the next segment index (one 4-byte read), or None when none is left."""
        try:
            got = os.read(self._read, 4)
        except BlockingIOError:
            return None
        return int.from_bytes(got, "little") if len(got) == 4 else None

    def drain(self) -> None:
        """Empty the queue."""
        while self.take() is not None:
            pass

    def close(self) -> None:
        """Close both ends of the pipe."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - already closed
                pass
