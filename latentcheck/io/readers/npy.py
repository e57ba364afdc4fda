"""``.npy`` files: the header is checked, the data memory-mapped and read with ``pread``.

Never unpickled: object arrays are refused by the dtype check before any data is read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..._validation import check_dtype, check_shape
from ...errors import FormatError
from ..keys import Chooser
from ..member import LazyMap, Member
from ..registry import Reader

__all__ = ["NpyReader", "open_npy", "read_npy_header"]


def read_npy_header(fh: Any, label: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Return (shape, fortran_order, dtype, data offset) of the .npy stream in `fh`."""
    fmt = np.lib.format
    try:
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
        raise FormatError(
            f"{label} is not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None
    return tuple(shape), bool(fortran), dtype, fh.tell()


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


class NpyReader(Reader):
    """NumPy ``.npy`` files: one unnamed array each."""

    name = "npy"
    suffixes = (".npy",)
    shown = ".npy"
    keyed = False

    def keys(self, path: Path) -> list[str] | None:
        """Return None: a ``.npy`` file holds one unnamed array."""
        del path
        return None

    def open(self, path: Path, choose: Chooser) -> Member:
        """Memory-map the array of `path` (`choose` only refuses a ``--key``)."""
        choose(None)
        return open_npy(path)
