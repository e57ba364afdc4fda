"""``.npz`` archives: stored members are memory-mapped in place, compressed ones inflated.

Compressed members are read whole (numpy cannot map them), after their declared size was
checked against the archive and the machine's memory; nothing is ever unpickled.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..._validation import check_dtype, check_shape
from ...errors import FormatError
from ..keys import Chooser
from ..member import LazyMap, Member
from ..registry import Reader
from .npy import read_npy_header

__all__ = ["NpzReader", "check_inflated_size", "npz_keys", "open_npz_member"]


def npz_keys(path: Path) -> list[str]:
    """Return the array names stored in an ``.npz`` file."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path} is not a readable .npz archive ({exc})") from None
    return [n[:-4] if n.endswith(".npy") else n for n in names]


def open_npz_member(path: Path, key: str) -> Member:
    """Open one member of an .npz: memory-mapped if stored uncompressed, else read."""
    label = f"{path}[{key}]"
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path} is not a readable .npz archive ({exc})") from None
    with zf:
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
            with open(path, "rb") as raw:
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
            if offset + nbytes > path.stat().st_size or info.file_size < nbytes:
                raise FormatError(f"{label} is truncated")
            if nbytes == 0:
                return Member(label, shape, dtype, np.zeros(shape, dtype=dtype), True)
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
        try:
            with zf.open(name) as fh:
                shape, fortran, dtype, header = read_npy_header(fh, label)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise FormatError(f"Cannot read {label} ({exc})") from None
        check_dtype(dtype, label)
        check_shape(shape, label)
        check_inflated_size(label, math.prod(shape) * dtype.itemsize, header, info)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = npz[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        raise FormatError(f"Cannot read {label} ({exc})") from None
    return Member(
        label=label, shape=tuple(data.shape), dtype=data.dtype, array=data, in_memory=True
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

    def keys(self, path: Path) -> list[str] | None:
        """Return the names of the archive's arrays."""
        return npz_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the member that `choose` picks."""
        key = choose(npz_keys(path))
        assert key is not None  # .npz members always have names
        return open_npz_member(path, key)
