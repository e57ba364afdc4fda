"""The energy test's Monte-Carlo replicates, drawn by a forked process from the end of pass 1.

The replicates depend only on their shape (m, d), their number and the seed, all known
once pass 1 has ended. Drawn in line they cost 0.15 CPU-s (99 replicates of 500 x 64) after
the sample's other statistics; on a thread they overlapped nothing (the loop holds the GIL
most of its time). A child forked before pass 2 starts, once scipy.special is imported,
draws them with the same function (:func:`~latentcheck.stats.joint.energy_distance.
null_statistics`) on the second core and sends back their n_resamples float64 values
through a pipe. Whatever goes wrong in the child, the test draws its own: the figures are
the same either way.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
from numpy.typing import NDArray

from ..engine.executor import current_executor
from ..engine.workers import die_with_parent, other_threads, processes_available
from .joint import JointOptions

__all__ = ["ForkedNull"]


class ForkedNull:
    """A child process drawing the energy test's replicates of shape (m, d).

    Use :meth:`maybe` to start one; :meth:`result_for` reads its values (None if the shape
    asked for is another, or the child failed); :meth:`close` ends it early.
    """

    def __init__(self, m: int, d: int, n_resamples: int, seed: int) -> None:
        import scipy.special  # noqa: F401  (imported once, before the fork: the child inherits it)

        from ..stats.joint.energy_distance import null_statistics

        self.key = (m, d)
        self.n_resamples = n_resamples
        parent = os.getpid()
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # else the child could flush them again
            if stream is not None:
                stream.flush()
        with warnings.catch_warnings():
            # Python >= 3.12 warns when a process with OS threads forks; the only others
            # here are OpenBLAS's idle helpers (Python threads are checked in `maybe`)
            warnings.filterwarnings("ignore", ".*multi-threaded.*", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, which ends with os._exit
            code = 1
            try:
                import signal

                os.close(read)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
                die_with_parent(parent)
                view = memoryview(null_statistics(m, d, n_resamples, seed).tobytes())
                while view:
                    view = view[os.write(write, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self._pid: int | None = pid
        self._read = read

    @classmethod
    def maybe(
        cls, *, rows: int, d: int, options: JointOptions, seed: int, threads: int
    ) -> ForkedNull | None:
        """Fork the child for a sample of `rows` rows in `d` dimensions, or return None.

        None with one worker, off Linux, inside an executor's task, with other Python
        threads running (a thread holding a lock at the fork could deadlock the child),
        in a daemonic process, without replicates, where the test would not draw them
        (too few rows to whiten), and when the system refuses the fork.
        """
        rows = min(rows, options.joint_samples)
        m = options.energy_samples if options.energy_samples < rows else rows
        if (
            threads < 2
            or options.energy_resamples <= 0
            or m < 3
            or m <= d
            or not processes_available()
            or current_executor() is not None
            or other_threads()
        ):
            return None
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.current_process().daemon:  # may not have children
            return None
        try:
            return cls(m, d, options.energy_resamples, seed)
        except OSError:  # fork or pipe refused (process or file limits, memory)
            return None

    def result_for(self, m: int, d: int) -> NDArray[np.float64] | None:
        """Return the replicates' statistics if they are of shape (m, d), else None.

        Waits for the child; None too if it failed (the test then draws its own).
        """
        chunks = []
        try:
            while chunk := os.read(self._read, 1 << 16):
                chunks.append(chunk)
        finally:
            self.close()
        data = b"".join(chunks)
        if self.key != (m, d) or len(data) != 8 * self.n_resamples:
            return None
        values: NDArray[np.float64] = np.frombuffer(data, dtype=np.float64).copy()
        return values

    def close(self) -> None:
        """End the child (killed if still running) and release the pipe."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            os.close(self._read)
        except OSError:  # pragma: no cover - already closed
            pass
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                import signal

                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            pass
