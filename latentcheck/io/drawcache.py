"""The draws of pass 1 kept for pass 2: an unlinked temporary file of rows.

The posterior draw z = mu + sigma * eps costs more than reading its rows back (the noise,
the exponential). :class:`KeptDraws` holds z in a temporary file that is unlinked
at once (nothing is left behind, whatever ends the process): pass 1 writes each chunk's
rows with ``pwrite``, pass 2 reads them back with ``preadv``, the very bits that were
drawn. The file descriptor and a shared flag page are made before the worker processes
fork, so that workers write and read the same file and see the flag the caller sets.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["KeptDraws"]

# the flag page: 0 while pass 1 writes, 1 once every row is written, 2 if a write failed
_WRITING, _SEALED, _FAILED = 0, 1, 2


#: the most bytes of draws kept on disk between the passes (beyond, pass 2 draws again)
MAX_KEPT_BYTES = 4 << 30


class KeptDraws:
    """Rows of float values kept in an unlinked temporary file, shared across a fork."""

    def __init__(self, n_dims: int, dtype: Any = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * n_dims
        self.n_dims = n_dims
        fd, path = tempfile.mkstemp(prefix="latentcheck-z-")
        os.unlink(path)
        self._fd = fd
        self._flag = mmap.mmap(-1, mmap.PAGESIZE)  # shared, anonymous: seen across a fork
        self._owner = os.getpid()

    @classmethod
    def maybe(cls, n_dims: int, n_rows: int, dtype: Any = np.float64) -> KeptDraws | None:
        """Return a store of `n_rows` rows of `n_dims` values, or None where it cannot serve.

        None (the draws are then made again in pass 2) without ``pwrite``/``preadv``, when
        the rows would take more than :data:`MAX_KEPT_BYTES`, or more than a quarter of the
        temporary directory's free space: a report must never fill a disk.
        """
        if not hasattr(os, "pwrite") or not hasattr(os, "preadv"):  # pragma: no cover
            return None
        size = np.dtype(dtype).itemsize * n_dims * n_rows
        if size > MAX_KEPT_BYTES:
            return None
        try:
            if size > shutil.disk_usage(tempfile.gettempdir()).free // 4:
                return None
        except OSError:
            return None
        try:
            return cls(n_dims, dtype)
        except OSError:  # no writable temporary directory: the draws are made again
            return None

    def __getstate__(self) -> Any:
        raise TypeError("KeptDraws holds a file descriptor; it is shared by fork only")

    @property
    def sealed(self) -> bool:
        """True once every row was written (see :meth:`seal`)."""
        return not self._flag.closed and self._flag[0] == _SEALED

    def write(self, row0: int, rows: NDArray[Any]) -> None:
        """Keep `rows` as rows row0, row0 + 1, ... (until sealed; a failure stops it)."""
        if self._flag.closed or self._flag[0] != _WRITING:
            return
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        try:
            if os.pwrite(self._fd, data.data, row0 * self.row_bytes) != data.nbytes:
                raise OSError("short write")
        except OSError:  # a full disk: pass 2 then draws again
            self._flag[0] = _FAILED

    def read(self, row0: int, n: int) -> NDArray[Any] | None:
        """Return rows row0 .. row0 + n - 1 as kept, or None unless sealed."""
        if not self.sealed:
            return None
        out = np.empty((n, self.n_dims), dtype=self.dtype)
        if os.preadv(self._fd, [out.data], row0 * self.row_bytes) != out.nbytes:
            return None
        return out

    def seal(self) -> None:
        """Mark every row as written (the caller, once pass 1 has read every chunk)."""
        if not self._flag.closed and self._flag[0] == _WRITING:
            self._flag[0] = _SEALED

    def close(self) -> None:
        """Close the file (the kernel frees it) and the flag page."""
        if os.getpid() != self._owner or self._flag.closed:
            return
        self._flag.close()
        os.close(self._fd)

    def __del__(self) -> None:
        self.close()
