"""Open latent arrays from files or memory and stream them as 2-D blocks of rows.

A :class:`LatentSource` is one data set: one or more arrays ("shards") concatenated along
axis 0, seen through a *view* that turns each block of the leading axis into a 2-D block of
shape (rows, n_dims). ``.npy`` files are memory-mapped and never read whole; uncompressed
``.npz`` members are memory-mapped in place; compressed ``.npz`` members are decompressed
into memory (numpy cannot map them), which the source notes. ``.safetensors``, ``.h5``,
``.zarr`` and ``.pt`` files are read by their own libraries (optional extras, see
:mod:`latentcheck._formats`), one slice of samples at a time. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import itertools
import math
import os
import stat
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import _formats
from ._formats import NPZ_ROLES as NPZ_ROLES
from ._formats import SUPPORTED as SUPPORTED
from ._validation import check_channel_axis, check_dtype, check_regular_file, check_shape
from .errors import FormatError, InputError

__all__ = [
    "LatentSource",
    "expand_paths",
    "file_keys",
    "npz_keys",
    "open_latents",
    "resolve_key",
]

_HAVE_PREADV = hasattr(os, "preadv")  # POSIX; elsewhere blocks come from the memory map


class _LazyMap:
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
class _Member:
    """One array of a data set: a file, a member of a file, or an in-memory array.

    `array` supports ``array[start:stop]`` along axis 0 (an ndarray, a memory map, or a
    :class:`~latentcheck._formats.SlicedArray` that reads only those items); `closer`
    releases a library's file handle and `notes` records conversions for the report.

    File-backed C-ordered arrays also keep their path and byte offset, so blocks are read
    with ``pread`` into a per-thread buffer instead of faulting pages of the memory map in:
    threads that fault pages of one address space serialise on the kernel's mmap lock
    (measured: pass 1 on 2 threads 0.80 s with the map, 0.58 s with pread).
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
        if self.path is None or stop <= start or not _HAVE_PREADV:
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
        # open and a close cost about 5 us against a block's read of up to 2 MiB
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
        if self.path is not None and _HAVE_PREADV:
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


@dataclass
class LatentSource:
    """A data set of latents seen as rows of shape (n_dims,).

    Attributes
    ----------
    members : list
        The shards, concatenated along axis 0 in order.
    item_shape : tuple of int
        Shape of one sample (the array shape without axis 0).
    channel_axis : int or None
        Axis of the original array that holds the dimensions (None when flattened).
    n_items : int
        Number of samples along axis 0, over all shards.
    rows_per_item : int
        Rows of the 2-D view that one sample contributes (H·W for conv latents).
    n_dims : int
        Number of dimensions (columns) of the 2-D view.
    dtype : numpy.dtype
        The dtype blocks are delivered in (float32 or float64).
    notes : list of str
        Conversions and memory notes for the report.
    """

    members: list[_Member]
    item_shape: tuple[int, ...]
    channel_axis: int | None
    n_items: int
    rows_per_item: int
    n_dims: int
    dtype: np.dtype[Any]
    notes: list[str] = field(default_factory=list)
    name: str = "latents"
    layout_note: str | None = None
    _bounds_cache: NDArray[np.int64] | None = field(default=None, repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        """Return the number of rows of the 2-D view (samples × positions)."""
        return self.n_items * self.rows_per_item

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the shape of the whole data set (all shards concatenated)."""
        return (self.n_items, *self.item_shape)

    @property
    def labels(self) -> list[str]:
        """Return the names of the shards."""
        return [m.label for m in self.members]

    def layout(self) -> str:
        """Describe in words how the arrays were turned into rows and dimensions."""
        note = self.layout_note
        if note is not None and note.startswith("per-sample files of mixed"):
            return note  # the 2-D view's own words would call positions samples
        text = self._layout()
        return text if note is None else f"{text}; {note}"

    def _layout(self) -> str:
        """Describe the view of the (concatenated) arrays."""
        shape = "×".join(str(s) for s in self.shape)
        if len(self.item_shape) == 1:
            return (
                f"2-D array ({shape}): {self.n_items} samples (rows) × "
                f"{self.n_dims} latent dimensions (columns)"
            )
        if self.channel_axis is None:
            return (
                f"{len(self.shape)}-D array ({shape}) flattened: every element of a sample is "
                f"a dimension, {self.n_dims} dimensions, {self.n_items} samples"
            )
        positions = self.rows_per_item
        other = [s for i, s in enumerate(self.item_shape, start=1) if i != self.channel_axis]
        pos_shape = "×".join(str(s) for s in other)
        return (
            f"{len(self.shape)}-D array ({shape}) with channels on axis {self.channel_axis}: "
            f"{self.n_dims} channels are the dimensions; each of the {self.n_items} samples "
            f"gives {positions} rows (positions {pos_shape}), {self.n_rows} rows in all"
        )

    def describe_row(self, row: int) -> str:
        """Return where row `row` of the 2-D view comes from, in words."""
        item, position = divmod(int(row), self.rows_per_item)
        if self.rows_per_item == 1:
            return f"sample {item}"
        other = [s for i, s in enumerate(self.item_shape, start=1) if i != self.channel_axis]
        pos = np.unravel_index(position, other)
        return f"sample {item}, position ({', '.join(str(int(p)) for p in pos)})"

    def boundaries(self) -> list[int]:
        """Return the cumulative leading-axis offsets of the shards, starting at 0."""
        return list(self._bounds().tolist())

    def _bounds(self) -> NDArray[np.int64]:
        """Return :meth:`boundaries` as an array, computed once (10 000 shards: issue 20)."""
        cached = self._bounds_cache
        if cached is None or cached.size != len(self.members) + 1:
            cached = np.zeros(len(self.members) + 1, dtype=np.int64)
            np.cumsum([m.shape[0] for m in self.members], out=cached[1:])
            self._bounds_cache = cached
        return cached

    @property
    def fork_safe(self) -> bool:
        """True if forked worker processes may read this data set.

        Files read with ``pread`` and arrays in memory are; arrays behind a library
        (HDF5, zarr) are not: their handles and internal state were not made for fork.
        """
        return all(
            m.path is not None or isinstance(m.array, (np.ndarray, _LazyMap)) for m in self.members
        )

    def read_items(self, start: int, stop: int) -> NDArray[Any]:
        """Return samples [start, stop) of the data set as a 2-D block of rows.

        The range must lie within one shard (see :func:`plan_blocks`). The block may be a
        view of a buffer that the next read of the same shard on the same thread reuses:
        copy what must outlive it (accumulators only keep reductions and copies).
        """
        bounds = self._bounds()
        k = int(bounds.searchsorted(start, side="right")) - 1
        member = self.members[k]
        if stop > bounds[k + 1]:  # internal invariant of plan_blocks
            raise AssertionError("block crosses a shard boundary")
        block = member.read(start - bounds[k], stop - bounds[k])
        if self.channel_axis is None:
            block = block.reshape(block.shape[0], -1)
        elif block.ndim > 2:
            block = np.moveaxis(block, self.channel_axis, -1).reshape(-1, self.n_dims)
        if block.dtype != self.dtype:
            block = block.astype(self.dtype)
        return np.asarray(block)

    def close(self) -> None:
        """Close files and drop references to memory maps."""
        for m in self.members:
            m.close()


#: Blocks a pass may be planned in (a plan takes about 100 bytes a block): a header that
#: declares 1e12 rows must not make the plan alone need gigabytes (issue 20).
MAX_BLOCKS = 1_000_000
#: Read speed assumed when telling how long a huge data set would take.
_ASSUMED_BYTES_PER_S = 1e9


def _too_many_blocks(source: LatentSource, n_blocks: int, per_block: int) -> str:
    """Return the message for a data set declared too large to plan in blocks."""
    nbytes = source.n_rows * source.n_dims * source.dtype.itemsize
    hours = 2 * nbytes / _ASSUMED_BYTES_PER_S / 3600  # two passes
    on_disk = ""
    for m in source.members:
        path = m.path or m.mapped
        if path is not None:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                blocks = getattr(st, "st_blocks", None)
                if blocks is not None and blocks * 512 < st.st_size // 100:
                    on_disk = (
                        f"; {m.label} is sparse: {blocks * 512} of its {st.st_size} bytes "
                        "are on disk, so its header may promise data it does not hold"
                    )
                    break
    return (
        f"{source.name} declares {source.n_rows} rows of {source.n_dims} dimensions "
        f"({nbytes / 2**40:.1f} TiB): {n_blocks} blocks of {per_block} samples, more than "
        f"the {MAX_BLOCKS} a pass plans, and about {hours:.0f} hours of reading at 1 GB/s"
        f"{on_disk}; pass a larger --chunk-rows, or a subset of the files"
    )


def plan_blocks(sources: Sequence[LatentSource], chunk_rows: int) -> list[tuple[int, int]]:
    """Return leading-axis ranges of about `chunk_rows` rows that cross no shard boundary."""
    first = sources[0]
    cuts: set[int] = set()
    for s in sources:
        cuts.update(s.boundaries())
    edges = sorted(cuts)
    per_block = max(1, chunk_rows // first.rows_per_item)
    n_blocks = sum(-(-(b - a) // per_block) for a, b in itertools.pairwise(edges))
    if n_blocks > MAX_BLOCKS:
        raise InputError(_too_many_blocks(first, n_blocks, per_block))
    out: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(edges):
        for start in range(a, b, per_block):
            out.append((start, min(start + per_block, b)))
    return out


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand globs in `paths` (sorted, as one data set) and check that the files exist."""
    out: list[Path] = []
    for p in paths:
        text = os.fspath(p)
        if any(ch in text for ch in "*?[") and not os.path.exists(text):
            matches = sorted(_glob.glob(text))
            if not matches:
                raise FormatError(f"No file matches the pattern {text}")
            out.extend(Path(m) for m in matches)
        else:
            path = Path(text)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise FormatError(f"File not found: {text}") from None
            except OSError as exc:  # EACCES on a parent, ENAMETOOLONG, ELOOP
                raise FormatError(f"Cannot read {text}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                if not _formats.is_zarr_store(path):
                    raise FormatError(
                        f"{text} is a directory; pass the files, e.g. "
                        f"{os.path.join(text, '*.npy')} (directories are read only as Zarr "
                        "stores)"
                    )
            out.append(path)
    for path in out:
        check_regular_file(path)
    return out


def _read_npy_header(fh: Any, label: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Return (shape, fortran_order, dtype, data offset) of the .npy stream in `fh`."""
    fmt = np.lib.format
    start = fh.tell()
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
    del start
    return tuple(shape), bool(fortran), dtype, fh.tell()


def _open_npy(path: Path) -> _Member:
    """Memory-map one .npy file after checking its header and size."""
    label = str(path)
    with open(path, "rb") as fh:
        shape, fortran, dtype, offset = _read_npy_header(fh, label)
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
        array = _LazyMap(path, dtype, offset, shape, "F" if fortran else "C")
    direct = None if fortran or math.prod(shape) == 0 else os.fspath(path)
    mapped = os.fspath(path) if direct is None and math.prod(shape) != 0 else None
    return _Member(
        label=label,
        shape=shape,
        dtype=dtype,
        array=array,
        path=direct,
        offset=offset,
        mapped=mapped,
        end=expected,
    )


def npz_keys(path: Path) -> list[str]:
    """Return the array names stored in an ``.npz`` file."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path} is not a readable .npz archive ({exc})") from None
    return [n[:-4] if n.endswith(".npy") else n for n in names]


def _open_npz_member(path: Path, key: str) -> _Member:
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
                shape, fortran, dtype, offset = _read_npy_header(raw, label)
            check_dtype(dtype, label)
            check_shape(shape, label)
            nbytes = math.prod(shape) * dtype.itemsize
            if offset + nbytes > path.stat().st_size or info.file_size < nbytes:
                raise FormatError(f"{label} is truncated")
            if nbytes == 0:
                return _Member(label, shape, dtype, np.zeros(shape, dtype=dtype), True)
            array = _LazyMap(path, dtype, offset, shape, "F" if fortran else "C")
            direct = None if fortran else os.fspath(path)
            mapped = os.fspath(path) if fortran else None
            return _Member(
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
                shape, fortran, dtype, header = _read_npy_header(fh, label)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise FormatError(f"Cannot read {label} ({exc})") from None
        check_dtype(dtype, label)
        check_shape(shape, label)
        _check_inflated_size(label, math.prod(shape) * dtype.itemsize, header, info)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = npz[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        raise FormatError(f"Cannot read {label} ({exc})") from None
    return _Member(
        label=label, shape=tuple(data.shape), dtype=data.dtype, array=data, in_memory=True
    )


def _physical_memory() -> int | None:
    """Return the machine's physical memory in bytes, or None where it cannot be known."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _check_inflated_size(label: str, nbytes: int, header: int, info: zipfile.ZipInfo) -> None:
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
    memory = _physical_memory()
    if memory is not None and nbytes > memory:
        raise FormatError(
            f"{label} is compressed, so it would be read into memory: {nbytes / 2**30:.1f} "
            f"GiB, more than this machine's {memory / 2**30:.1f} GiB; save it with np.savez "
            "(uncompressed) or as .npy to stream it"
        )


def _file_format(path: Path) -> str:
    """Return the format name of `path`, or raise FormatError for an unknown extension."""
    fmt = _formats.file_format(path)
    if fmt is None:
        ext = path.suffix.lower()
        raise FormatError(
            f"Unknown file type {ext or '(no extension)'!r} for {path}; "
            f"latentcheck reads {SUPPORTED}"
        )
    return fmt


def _keys(path: Path) -> list[str] | None:
    """Return the array names in `path`, or None for a file of one unnamed array."""
    fmt = _file_format(path)
    if fmt == "npy":
        return None
    if fmt == "npz":
        return npz_keys(path)
    return _formats.keys(path, fmt)


def file_keys(path: str | os.PathLike[str]) -> list[str]:
    """Return the names of the arrays stored in a file, as its library lists them.

    Parameters
    ----------
    path : str or Path
        An ``.npz``, ``.safetensors``, ``.h5``/``.hdf5``, ``.zarr`` or ``.pt``/``.pth``
        file. Arrays nested in groups (HDF5, Zarr) or dicts (PyTorch) are named
        ``group/name``.

    Returns
    -------
    list of str
        The names accepted by ``key``; empty for a file that holds one unnamed array
        (``.npy``, a Zarr array, a ``.pt`` file of one tensor).

    Raises
    ------
    FormatError
        An unreadable file, an unknown extension, or a missing optional library.
    """
    return _keys(Path(path)) or []


def resolve_key(path: Path, key: str | None, role: str = "z") -> str | None:
    """Return the array of `path` to read for `role`: `key` if given, else by name.

    Names are looked up in :data:`NPZ_ROLES` for `role`; a file of one array needs no name.
    Returns None for a file that holds one unnamed array (``.npy``, a Zarr array, a ``.pt``
    tensor).
    """
    return _formats.choose_key(path, _keys(path), key, role)


resolve_npz_key = resolve_key


def _member_from_array(obj: Any, label: str) -> _Member:
    """Wrap an in-memory array-like as a member, refusing object arrays."""
    note = None
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        obj, note = _formats.tensor_to_numpy(obj, label)
    arr = obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    check_dtype(arr.dtype, label)
    check_shape(arr.shape, label)
    return _Member(
        label=label,
        shape=tuple(arr.shape),
        dtype=arr.dtype,
        array=arr,
        in_memory=True,
        notes=[note] if note else [],
    )


def _open_member(path: Path, key: str | None, role: str) -> _Member:
    """Open one file as a member, by format."""
    fmt = _file_format(path)
    if fmt == "npy":
        _formats.choose_key(path, None, key, role)
        return _open_npy(path)
    if fmt == "npz":
        npz_key = _formats.choose_key(path, npz_keys(path), key, role)
        assert npz_key is not None  # .npz members always have names
        return _open_npz_member(path, npz_key)
    opened = _formats.open_array(path, fmt, lambda keys: _formats.choose_key(path, keys, key, role))
    opened.array.label = opened.label
    member = _Member(
        label=opened.label,
        shape=opened.shape,
        dtype=opened.dtype,
        array=opened.array,
        closer=opened.close,
        notes=opened.notes,
    )
    try:
        check_dtype(opened.dtype, opened.label)
        check_shape(opened.shape, opened.label)
    except (FormatError, InputError):
        member.close()
        raise
    return member


def open_latents(
    latents: Any,
    *,
    key: str | None = None,
    channel_axis: int = 1,
    flatten: bool = False,
    role: str = "z",
    name: str | None = None,
    per_sample: bool | None = None,
) -> LatentSource:
    """Open latents for streaming: a path, a list of paths or globs, or array(s).

    Parameters
    ----------
    latents : str, Path, ndarray, or a sequence of them
        One data set. Several files (or a glob) are concatenated along axis 0. Files are
        ``.npy``, ``.npz``, ``.safetensors``, ``.h5``/``.hdf5``, ``.zarr`` (a directory
        store) or ``.pt``/``.pth`` (tensors only: loaded with ``weights_only=True``); the
        last four need their libraries (extras ``safetensors``, ``hdf5``, ``zarr``,
        ``torch``).
    key : str or None, default=None
        The array to read from files of named arrays (``group/name`` when nested); by
        default chosen by name (``z``, ``latents``…), or the only one.
    channel_axis : int, default=1
        For arrays of 3 or more dimensions, the axis that holds the latent channels; all
        other non-sample axes become extra rows (positions).
    flatten : bool, default=False
        Make every element of a sample a dimension instead.
    role : {"z", "mu", "logvar", "std", "var"}, default="z"
        Which names (:data:`NPZ_ROLES`) to look for.
    name : str or None
        A label for messages.
    per_sample : bool or None, default=None
        For several files: True reads each file as one sample (a (C, H, W) file gives one
        sample of C channels; files of mixed spatial sizes are pooled per channel), False
        concatenates them as batches along axis 0. None (the default) reads them as
        batches, per sample when only that fits, and refuses 3-D files of one shape that
        look like single samples (see :mod:`latentcheck._persample`).

    Returns
    -------
    LatentSource

    Raises
    ------
    FormatError
        Missing, unreadable, truncated or pickled input, an unknown extension, a file of
        named arrays without a recognisable key, a missing optional library.
    InputError
        Shapes that cannot hold latents or that disagree between shards.
    """
    items: list[Any]
    if isinstance(latents, (str, os.PathLike)):
        items = [latents]
    elif isinstance(latents, np.ndarray) or hasattr(latents, "__array__"):
        items = [latents]
    elif isinstance(latents, Sequence) and not isinstance(latents, (bytes, bytearray)):
        items = list(latents)
        if not items:
            raise InputError("No input given: pass an array, a file path or a list of them")
    else:
        raise InputError(
            f"Cannot read latents from a {type(latents).__name__}; pass a numpy array, "
            "a path, or a list of arrays or paths"
        )
    members: list[_Member] = []
    if all(isinstance(x, (str, os.PathLike)) for x in items):
        for path in expand_paths(items):
            members.append(_open_member(path, key, role))
        from ._persample import per_sample_members

        try:
            members, note = per_sample_members(members, per_sample, channel_axis, flatten)
        except BaseException:
            for m in members:
                m.close()
            raise
        source = _build_source(members, channel_axis=channel_axis, flatten=flatten, name=name)
        source.layout_note = note
        return source
    else:
        for i, x in enumerate(items):
            if isinstance(x, (str, os.PathLike)):
                for path in expand_paths([x]):
                    members.append(_open_member(path, key, role))
            else:
                label = name or ("array" if len(items) == 1 else f"array {i}")
                members.append(_member_from_array(x, label))
    return _build_source(members, channel_axis=channel_axis, flatten=flatten, name=name)


def _build_source(
    members: list[_Member], *, channel_axis: int, flatten: bool, name: str | None
) -> LatentSource:
    """Check that shards agree and set up the 2-D view."""
    first = members[0]
    item_shape = first.shape[1:]
    for m in members[1:]:
        if m.shape[1:] != item_shape:
            raise InputError(
                f"Shards disagree: {first.label} has samples of shape {item_shape} but "
                f"{m.label} has {m.shape[1:]}; all files of one data set need the same shape "
                "apart from axis 0"
            )
    notes: list[str] = []
    dtypes = []
    for m in members:
        dt, note = check_dtype(m.dtype, m.label)
        dtypes.append(dt)
        if note and note not in notes:
            notes.append(note)
        for n in m.notes:
            if n not in notes:
                notes.append(n)
        if m.in_memory and m.label.endswith("]"):
            notes.append(
                f"{m.label} is compressed, so it was read into memory "
                f"({m.array.nbytes / 2**20:.1f} MiB); save with np.savez (uncompressed) "
                "or .npy to stream it"
            )
    dtype = np.result_type(*dtypes)
    ndim = len(item_shape) + 1
    if ndim == 2:
        check_channel_axis(channel_axis, ndim, first.label)
    if flatten or ndim == 2:
        axis: int | None = None if (flatten and ndim > 2) else 1
        n_dims = math.prod(item_shape)
        rows_per_item = 1
    else:
        axis = check_channel_axis(channel_axis, ndim, first.label)
        n_dims = item_shape[axis - 1]
        rows_per_item = math.prod(item_shape) // n_dims
    return LatentSource(
        members=members,
        item_shape=tuple(item_shape),
        channel_axis=axis,
        n_items=sum(m.shape[0] for m in members),
        rows_per_item=rows_per_item,
        n_dims=n_dims,
        dtype=np.dtype(dtype),
        notes=notes,
        name=name or (first.label if len(members) == 1 else f"{len(members)} files"),
    )


def iter_blocks(
    source: LatentSource, chunk_rows: int, ranges: list[tuple[int, int]] | None = None
) -> Iterator[tuple[int, NDArray[Any]]]:
    """Yield (first row index, 2-D block) over the whole source in order.

    Each block is an independent copy (unlike :meth:`LatentSource.read_items`, whose
    blocks may share a reused buffer).
    """
    if ranges is None:
        ranges = plan_blocks([source], chunk_rows)
    for start, stop in ranges:
        yield start * source.rows_per_item, np.array(source.read_items(start, stop), copy=True)
