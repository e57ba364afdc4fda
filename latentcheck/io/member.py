"""One array of a data set (a shard) and the lazy array-likes that shards read through.

A :class:`Member` is what every reader returns: a file, a member of a file, or an
in-memory array, read ``[start:stop]`` along axis 0. Local C-ordered files are read with
``pread`` into a per-thread buffer; other files through a :class:`LazyMap` (a memory map
made on first use) or a :class:`SlicedArray` over a library's array.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError

__all__ = ["HAVE_PREADV", "LazyMap", "Member", "SlicedArray"]

HAVE_PREADV = hasattr(os, "preadv")  # POSIX; elsewhere blocks come from the memory map


class LazyMap:
    """A read-only memory map of an array in a file, made on first use.

    A map holds a file descriptor for as long as it lives; C-ordered files are read with
    ``pread`` and never need theirs, so a data set of thousands of shards holds none.
    """

    def __init__(
        self,
        path: Path,
        dtype: np.dtype[Any],
        offset: int,
        shape: tuple[int, ...],
        order: Literal["C", "F"],
    ) -> None:
        self._args = (path, dtype, offset, shape, order)
        self._map: np.memmap[Any, Any] | None = None
        self.shape = shape
        self.dtype = dtype

    def __getitem__(self, index: Any) -> Any:
        if self._map is None:
            path, dtype, offset, shape, order = self._args
            self._map = np.memmap(
                path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order
            )
        return self._map[index]


@dataclass
class Member:
    """One array of a data set: a file, a member of a file, or an in-memory array.

    `array` supports ``array[start:stop]`` along axis 0 (an ndarray, a memory map, or a
    :class:`SlicedArray` that reads only those items); `closer`
    releases a library's file handle and `notes` records conversions for the report.

    File-backed C-ordered arrays also keep their path and byte offset, so blocks are read
    with ``pread`` into a per-thread buffer instead of faulting pages of the memory map in:
    threads that fault pages of one address space serialise on the kernel's mmap lock
    (the CHANGELOG has the measurement).
    """

    label: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    array: Any  # ndarray or np.memmap
    in_memory: bool = False
    path: str | None = None
    offset: int = 0
    closer: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)
    mapped: str | None = None  # the file behind a memory map read without pread
    end: int = 0  # the size that file needs
    _io: dict[int, memoryview] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, start: int, stop: int) -> NDArray[Any]:
        """Return items [start, stop) along axis 0.

        For files this is a view of this thread's buffer for this member: it stays valid
        until the next read of the same member on the same thread.
        """
        if self.path is None or stop <= start or not HAVE_PREADV:
            if self.mapped is None:
                return np.asarray(self.array[start:stop])
            # a page of a memory map beyond the end of a file truncated since it was
            # opened is SIGBUS, not an exception: check the size, then copy at once
            try:
                size = os.stat(self.mapped).st_size
            except OSError as exc:
                raise FormatError(f"{self.label} can no longer be read ({exc.strerror})") from None
            if size < self.end:
                raise FormatError(
                    f"{self.label} was truncated while it was read ({size} of {self.end} "
                    "bytes left); did another program rewrite it?"
                )
            return np.array(self.array[start:stop], copy=True)
        item = math.prod(self.shape[1:]) * self.dtype.itemsize
        n = (stop - start) * item
        buf = self._thread_buffer(n)
        # opened for this read only: a data set of 10 000 shards must not hold a
        # descriptor per shard (600 of them hit the usual `ulimit -n 1024`, issue 20); an
        # open and a close cost little against a block's read of up to 2 MiB
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise FormatError(f"{self.label} can no longer be read ({exc.strerror})") from None
        try:
            got = os.preadv(fd, [buf[:n]], self.offset + start * item)
        except OSError as exc:
            raise FormatError(f"{self.label} could not be read ({exc.strerror})") from None
        finally:
            os.close(fd)
        if got != n:
            raise FormatError(f"{self.label}: short read at item {start}; did the file change?")
        return np.frombuffer(buf[:n], dtype=self.dtype).reshape((stop - start, *self.shape[1:]))

    def __getstate__(self) -> dict[str, Any]:
        """Return what travels to another process (an executor's worker, issue 19).

        Files read with ``pread`` travel as their path and offset (never their data), in
        memory arrays as their data; the lock and the per-thread buffers are made anew.
        Data read through a library (HDF5, zarr) holds handles that cannot travel.
        """
        if self.closer is not None:
            raise TypeError(f"{self.label} is read through a library and cannot be shipped")
        state = {k: v for k, v in self.__dict__.items() if k not in ("_io", "_lock")}
        if self.path is not None and HAVE_PREADV:
            state["array"] = None  # read with pread: the map is not needed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild a member shipped by :meth:`__getstate__`."""
        self.__dict__.update(state)
        self._io = {}
        self._lock = threading.Lock()

    def _thread_buffer(self, nbytes: int) -> memoryview:
        """Return this thread's buffer for this member, of at least `nbytes` bytes."""
        key = threading.get_ident()
        with self._lock:
            buf = self._io.get(key, memoryview(b""))
            if buf.nbytes < nbytes:
                raw = np.empty(nbytes + 64, dtype=np.uint8)
                lead = (-raw.ctypes.data) % 64  # cache-line aligned rows
                buf = raw[lead : lead + nbytes].data
                self._io[key] = buf
        return buf

    def close(self) -> None:
        """Close the file descriptors and handles and drop the buffers and the memory map."""
        with self._lock:
            self._io.clear()
            closer, self.closer = self.closer, None
        if closer is not None:
            closer()
        if not self.in_memory:
            self.array = None


class SlicedArray:
    """Array-like over a library's array: ``[start:stop]`` reads and converts those items.

    Only slices along axis 0 are supported; there is deliberately no ``__array__``, so
    nothing can read the whole array by accident.
    """

    def __init__(
        self,
        data: Any,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        convert: Callable[[Any], NDArray[Any]] | None = None,
        label: str = "an array",
    ) -> None:
        self.data = data
        self.shape = shape
        self.dtype = dtype
        self.convert = convert
        self.label = label  # the shard's name, for messages

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> NDArray[Any]:
        try:
            block = self.data[index]
            out = np.asarray(block if self.convert is None else self.convert(block))
        except Exception as exc:
            # a chunk found corrupt mid-stream (HDF5 filters, zarr codecs, a changed file):
            # the libraries raise their own types; it is an unreadable input (issue 20)
            raise FormatError(
                f"Cannot read items {index.start}:{index.stop} of {self.label} "
                f"({type(exc).__name__}: {exc}); is the file corrupt?"
            ) from None
        if out.dtype != self.dtype:
            out = out.astype(self.dtype)
        return out
