"""``.npy`` files: the header is checked, the data memory-mapped and read with ``pread``.

Never unpickled: object arrays are refused by the dtype check before any data is read.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FormatError
from ...validation import check_dtype, check_shape
from ..keys import Chooser
from ..member import LazyMap, Member
from ..registry import Reader
from ..remote import RangedArray, RangedFile, RemotePath

__all__ = ["NpyReader", "open_npy", "open_npy_remote", "read_npy_header"]

#: why a header longer than numpy parses is refused (numpy's own message suggests
#: allow_pickle=True: latentcheck never unpickles, so it words the refusal itself)
LONG_HEADER = "its header of {length} bytes is longer than numpy parses safely"
#: numpy's limit on the length of a header it parses (``max_header_size``).
MAX_HEADER_SIZE = 10_000


def read_npy_header(fh: Any, label: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Return (shape, fortran_order, dtype, data offset) of the .npy stream in `fh`."""
    fmt = np.lib.format
    try:
        _refuse_long_header(fh)
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported format version {version}")
    except Exception as exc:
        # ValueError, SyntaxError, tokenize.TokenError, MemoryError, RecursionError...:
        # whatever numpy's header parser raises on hostile bytes is an unreadable file
        detail = " ".join(str(exc).split())
        found = re.search(r"Header info length \((\d+)\)", detail)
        if found:  # numpy's refusal advises allow_pickle=True, which latentcheck never uses
            detail = LONG_HEADER.format(length=found.group(1))
        raise FormatError(
            f"{label} is not a readable .npy array ({type(exc).__name__}: {detail})"
        ) from None
    return tuple(shape), bool(fortran), dtype, fh.tell()


def _refuse_long_header(fh: Any) -> None:
    """Raise numpy's own error for a header too long to parse, before reading it.

    numpy reads a header whole before it checks its length; a version 2 or 3 header may
    declare 4 GiB. Over a ranged remote file that would fetch up to the whole file, so
    such a header is refused as numpy refuses it, from the 12 bytes before it.
    """
    if not isinstance(fh, RangedFile):
        return
    start = fh.tell()
    lead = fh.read(12)
    fh.seek(start)
    if len(lead) < 12 or lead[:6] != b"\x93NUMPY" or lead[6] not in (2, 3):
        return
    length = int.from_bytes(lead[8:12], "little")
    available = fh.end - start - 12
    if length > available:
        raise ValueError(f"EOF: reading array header, expected {length} bytes got {available}")
    if length > MAX_HEADER_SIZE * (4 if lead[6] == 3 else 1):
        raise ValueError(LONG_HEADER.format(length=length))


def open_npy(path: Path) -> Member:
    """Memory-map one .npy file after checking its header and size."""
    label = str(path)
    with open(path, "rb") as fh:
        shape, fortran, dtype, offset = read_npy_header(fh, label)
    check_dtype(dtype, label)
    check_shape(shape, label)
    expected = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise FormatError(
            f"{label} is truncated: its header promises shape {shape} of {dtype} "
            f"({expected} bytes) but the file has {size} bytes"
        )
    if math.prod(shape) == 0:
        array: Any = np.zeros(shape, dtype=dtype)
    else:
        array = LazyMap(path, dtype, offset, shape, "F" if fortran else "C")
    direct = None if fortran or math.prod(shape) == 0 else os.fspath(path)
    mapped = os.fspath(path) if direct is None and math.prod(shape) != 0 else None
    return Member(
        label=label,
        shape=shape,
        dtype=dtype,
        array=array,
        path=direct,
        offset=offset,
        mapped=mapped,
        end=expected,
    )


def open_npy_remote(path: RemotePath) -> Member:
    """Open one remote .npy file: its header by ranged reads, then blocks on demand."""
    label = str(path)
    with RangedFile(path) as fh:
        shape, fortran, dtype, offset = read_npy_header(fh, label)
        size = fh.end
    check_dtype(dtype, label)
    check_shape(shape, label)
    expected = offset + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise FormatError(
            f"{label} is truncated: its header promises shape {shape} of {dtype} "
            f"({expected} bytes) but the file has {size} bytes"
        )
    if math.prod(shape) == 0:
        return Member(label, shape, dtype, np.zeros(shape, dtype=dtype))
    return Member(label, shape, dtype, RangedArray(path, dtype, offset, shape, fortran, label))


class NpyReader(Reader):
    """NumPy ``.npy`` files: one unnamed array each."""

    name = "npy"
    suffixes = (".npy",)
    shown = ".npy"
    keyed = False
    remote = True

    def keys(self, path: Path) -> list[str] | None:
        """Return None: a ``.npy`` file holds one unnamed array."""
        del path
        return None

    def open(self, path: Path, choose: Chooser) -> Member:
        """Memory-map the array of `path` (`choose` only refuses a ``--key``)."""
        choose(None)
        return open_npy(path)

    def keys_remote(self, path: RemotePath) -> list[str] | None:
        """Return None: a ``.npy`` file holds one unnamed array."""
        del path
        return None

    def open_remote(self, path: RemotePath, choose: Chooser) -> Member:
        """Open a remote ``.npy`` file for ranged reads."""
        choose(None)
        return open_npy_remote(path)
