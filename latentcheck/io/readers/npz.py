"""``.npz`` archives: stored members are memory-mapped in place, compressed ones inflated.

Compressed members are read whole (numpy cannot map them), after their declared size was
checked against the archive and the machine's memory; nothing is ever unpickled.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import FormatError
from ...validation import check_dtype, check_shape
from ..keys import Chooser
from ..member import LazyMap, Member
from ..registry import Reader
from ..remote import RangedArray, RangedFile, RemotePath
from .npy import read_npy_header

__all__ = ["NpzReader", "check_inflated_size", "npz_keys", "open_npz_member"]


def _zip(path: Path | RemotePath) -> zipfile.ZipFile:
    """Return the archive at `path` opened for reading (remote: by ranged reads)."""
    try:
        return zipfile.ZipFile(path if isinstance(path, Path) else RangedFile(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path} is not a readable .npz archive ({exc})") from None


def npz_keys(path: Path | RemotePath) -> list[str]:
    """Return the array names stored in an ``.npz`` file."""
    with _zip(path) as zf:
        names = zf.namelist()
    return [n[:-4] if n.endswith(".npy") else n for n in names]


def open_npz_member(path: Path | RemotePath, key: str) -> Member:
    """Open one member of an .npz: mapped (remote: ranged reads) if stored, else inflated."""
    label = f"{path}[{key}]"
    with _zip(path) as zf:
        name = key + ".npy" if key + ".npy" in zf.namelist() else key
        info = zf.getinfo(name)
        if info.flag_bits & 0x1:
            raise FormatError(f"{label} is encrypted; latentcheck reads unencrypted .npz files")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FormatError(
                f"{label} uses zip compression method {info.compress_type}, which .npz files "
                "never use; save the latents with np.savez or np.savez_compressed"
            )
        if info.compress_type == zipfile.ZIP_STORED:
            return _open_stored(path, info, label)
        try:
            with zf.open(name) as fh:
                shape, _, dtype, header = read_npy_header(fh, label)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise FormatError(f"Cannot read {label} ({exc})") from None
        check_dtype(dtype, label)
        check_shape(shape, label)
        check_inflated_size(label, math.prod(shape) * dtype.itemsize, header, info)
        if not isinstance(path, Path):
            data = _inflate(lambda: zf.open(name), label)
    if isinstance(path, Path):
        data = _inflate(lambda: np.load(path, allow_pickle=False), label, key)
    return Member(
        label=label, shape=tuple(data.shape), dtype=data.dtype, array=data, in_memory=True
    )


def _inflate(opener: Callable[[], Any], label: str, key: str | None = None) -> NDArray[Any]:
    """Return the array read from `opener()`: an NpzFile (its member `key`) or a stream."""
    try:
        with opener() as npz:
            if key is not None:
                data: NDArray[Any] = npz[key]
            else:
                data = np.lib.format.read_array(npz, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        raise FormatError(f"Cannot read {label} ({exc})") from None
    return data


def _open_stored(path: Path | RemotePath, info: zipfile.ZipInfo, label: str) -> Member:
    """Open a member stored uncompressed: its header is read, its data read in place."""
    with open(path, "rb") if isinstance(path, Path) else RangedFile(path) as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
        if local[:4] != b"PK\x03\x04":
            raise FormatError(f"{path} is a corrupt .npz archive (bad local header)")
        n_name = int.from_bytes(local[26:28], "little")
        n_extra = int.from_bytes(local[28:30], "little")
        raw.seek(info.header_offset + 30 + n_name + n_extra)
        shape, fortran, dtype, offset = read_npy_header(raw, label)
    check_dtype(dtype, label)
    check_shape(shape, label)
    nbytes = math.prod(shape) * dtype.itemsize
    size = path.stat().st_size if isinstance(path, Path) else path.size()
    if offset + nbytes > size or info.file_size < nbytes:
        raise FormatError(f"{label} is truncated")
    if nbytes == 0:
        return Member(label, shape, dtype, np.zeros(shape, dtype=dtype), True)
    if not isinstance(path, Path):
        return Member(label, shape, dtype, RangedArray(path, dtype, offset, shape, fortran, label))
    array = LazyMap(path, dtype, offset, shape, "F" if fortran else "C")
    direct = None if fortran else os.fspath(path)
    mapped = os.fspath(path) if fortran else None
    return Member(
        label,
        shape,
        dtype,
        array,
        path=direct,
        offset=offset,
        mapped=mapped,
        end=offset + nbytes,
    )


def physical_memory() -> int | None:
    """Return the machine's physical memory in bytes, or None where it cannot be known."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_inflated_size(label: str, nbytes: int, header: int, info: zipfile.ZipInfo) -> None:
    """Refuse a compressed member before inflating it when its sizes cannot be right.

    Its header's shape must fit in the size the archive records for it, and in the
    machine's memory (it is read whole): checked by arithmetic, before any allocation, so
    that a header declaring 10^12 values is an error line, not an out-of-memory kill.
    """
    if header + nbytes > info.file_size:
        raise FormatError(
            f"{label} is corrupt: its header declares {nbytes} bytes of data but the archive "
            f"records {info.file_size} bytes for the member"
        )
    memory = physical_memory()
    if memory is not None and nbytes > memory:
        raise FormatError(
            f"{label} is compressed, so it would be read into memory: {nbytes / 2**30:.1f} "
            f"GiB, more than this machine's {memory / 2**30:.1f} GiB; save it with np.savez "
            "(uncompressed) or as .npy to stream it"
        )


class NpzReader(Reader):
    """NumPy ``.npz`` archives of named arrays."""

    name = "npz"
    suffixes = (".npz",)
    shown = ".npz"
    remote = True

    def keys(self, path: Path) -> list[str] | None:
        """Return the names of the archive's arrays."""
        return npz_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the member that `choose` picks."""
        key = choose(npz_keys(path))
        assert key is not None  # .npz members always have names
        return open_npz_member(path, key)

    def keys_remote(self, path: RemotePath) -> list[str] | None:
        """Return the names of a remote archive's arrays (its zip directory only)."""
        return npz_keys(path)

    def open_remote(self, path: RemotePath, choose: Chooser) -> Member:
        """Open the member that `choose` picks, read by ranges if stored uncompressed."""
        key = choose(npz_keys(path))
        assert key is not None  # .npz members always have names
        return open_npz_member(path, key)
