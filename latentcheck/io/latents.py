"""Open latent arrays from files or memory and stream them as 2-D blocks of rows.

A :class:`LatentSource` is one data set: one or more arrays ("shards") concatenated along
axis 0, seen through a *view* that turns each block of the leading axis into a 2-D block of
shape (rows, n_dims). ``.npy`` files are memory-mapped and never read whole; uncompressed
``.npz`` members are memory-mapped in place; compressed ``.npz`` members are decompressed
into memory (numpy cannot map them), which the source notes. ``.safetensors``, ``.h5``,
``.zarr`` and ``.pt`` files are read by their own libraries (optional extras, see
:mod:`latentcheck.io.readers`), one slice of samples at a time. Nothing is ever unpickled.
Each format is a :class:`~latentcheck.io.registry.Reader` found by suffix in the registry;
paths with a protocol (``s3://``…) are read through fsspec (:mod:`latentcheck.io.remote`).
"""

from __future__ import annotations

import contextlib
import glob as _glob
import itertools
import math
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, InputError
from ..validation import check_channel_axis, check_dtype, check_regular_file, check_shape
from .keys import NPZ_ROLES as NPZ_ROLES
from .keys import choose_key, chooser
from .member import LazyMap, Member
from .persample import per_sample_members
from .readers.npz import npz_keys as npz_keys
from .registry import find_reader, reader_for, supported
from .remote import RemotePath, expand_remote, has_protocol, using_storage_options

#: The formats latentcheck reads, for messages (readers registered later add to
#: :func:`latentcheck.io.registry.supported`).
SUPPORTED = supported()

__all__ = [
    "LatentSource",
    "expand_paths",
    "file_keys",
    "npz_keys",
    "open_latents",
    "resolve_key",
]


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

    members: list[Member]
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
            m.path is not None or isinstance(m.array, (np.ndarray, LazyMap)) for m in self.members
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

    def read_with(
        self, start: int, stop: int, parts: Sequence[str]
    ) -> tuple[NDArray[Any], dict[str, NDArray[Any]]]:
        """Return :meth:`read_items` and the named arrays the rows were computed from.

        A source computed from other arrays (the posterior draw,
        :class:`~latentcheck.io.posterior.DrawSource`) hands them out as `parts`, row for
        row, so that accumulators of those arrays need no read of their own; a source of
        stored rows has none.
        """
        if parts:
            raise ValueError(f"{type(self).__name__} has no part {parts[0]!r}")
        return self.read_items(start, stop), {}

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


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path | RemotePath]:
    """Expand globs in `paths` (sorted, as one data set) and check that the files exist.

    ``**`` matches any number of directories. Paths with a protocol (``s3://``…) are
    expanded through fsspec (:mod:`latentcheck.io.remote`) into :class:`RemotePath`.
    """
    out: list[Path | RemotePath] = []
    for p in paths:
        text = os.fspath(p)
        if has_protocol(text):
            out.extend(_expand_remote(text))
        elif any(ch in text for ch in "*?[") and not os.path.exists(text):
            matches = sorted(_glob.glob(text, recursive=True))
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
                reader = find_reader(path)
                if reader is None or not reader.directory:
                    raise FormatError(
                        f"{text} is a directory; pass the files, e.g. "
                        f"{os.path.join(text, '*.npy')} (directories are read only as Zarr "
                        "stores)"
                    )
            out.append(path)
    for local in out:
        if isinstance(local, Path):
            check_regular_file(local)
    return out


def _expand_remote(text: str) -> list[RemotePath]:
    """Return the remote files `text` names, refusing directories that are no store."""
    out = expand_remote(text)
    for path in out:
        # a suffix that names a file format costs no request; stores are found by detection
        if find_reader(path) is None and path.is_dir():
            raise FormatError(
                f"{path} is a directory; pass the files, e.g. {path}/*.npy (directories "
                "are read only as Zarr stores)"
            )
    return out


def _one_path(path: str | os.PathLike[str] | RemotePath) -> Path | RemotePath:
    """Return `path` as a local Path, or as the RemotePath its URL names."""
    if isinstance(path, RemotePath):
        return path
    text = os.fspath(path)
    return expand_remote(text)[0] if has_protocol(text) else Path(text)


def _keys(path: Path | RemotePath) -> list[str] | None:
    """Return the array names in `path`, or None for a file of one unnamed array."""
    reader = reader_for(path)
    return reader.keys(path) if isinstance(path, Path) else reader.keys_remote(path)


def file_keys(
    path: str | os.PathLike[str] | RemotePath, *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
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
    with using_storage_options(storage_options):
        return _keys(_one_path(path)) or []


def resolve_key(path: Path | RemotePath, key: str | None, role: str = "z") -> str | None:
    """Return the array of `path` to read for `role`: `key` if given, else by name.

    Names are looked up in :data:`NPZ_ROLES` for `role`; a file of one array needs no name.
    Returns None for a file that holds one unnamed array (``.npy``, a Zarr array, a ``.pt``
    tensor).
    """
    return choose_key(path, _keys(_one_path(path)), key, role)


resolve_npz_key = resolve_key


def _member_from_array(obj: Any, label: str) -> Member:
    """Wrap an in-memory array-like as a member, refusing object arrays."""
    note = None
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        from .readers.torch import tensor_to_numpy

        obj, note = tensor_to_numpy(obj, label)
    arr = obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    check_dtype(arr.dtype, label)
    check_shape(arr.shape, label)
    return Member(
        label=label,
        shape=tuple(arr.shape),
        dtype=arr.dtype,
        array=arr,
        in_memory=True,
        notes=[note] if note else [],
    )


def _open_member(path: Path | RemotePath, key: str | None, role: str) -> Member:
    """Open one file as a member, by its format's reader."""
    reader = reader_for(path)
    choose = chooser(path, key, role)
    if isinstance(path, Path):
        member = reader.open(path, choose)
    else:
        member = reader.open_remote(path, choose)
    try:
        check_dtype(member.dtype, member.label)
        check_shape(member.shape, member.label)
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
    storage_options: Mapping[str, Any] | None = None,
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
        look like single samples (see :mod:`latentcheck.io.persample`).
    storage_options : dict or None, default=None
        Options of the fsspec filesystem for paths with a protocol (``s3://``, ``gs://``,
        ``hf://``, ``https://``, ``file://``, ``memory://``…), e.g. credentials or an
        endpoint; ``.npy``, ``.npz``, ``.safetensors`` and Zarr stores are read from
        them by ranged reads (extra ``remote``). Local paths never use fsspec.

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
    with using_storage_options(storage_options):
        return _open_latents(latents, key, channel_axis, flatten, role, name, per_sample)


def _open_latents(
    latents: Any,
    key: str | None,
    channel_axis: int,
    flatten: bool,
    role: str,
    name: str | None,
    per_sample: bool | None,
) -> LatentSource:
    """Open latents for streaming (see :func:`open_latents`)."""
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
    members: list[Member] = []
    if all(isinstance(x, (str, os.PathLike)) for x in items):
        for path in expand_paths(items):
            members.append(_open_member(path, key, role))
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
    members: list[Member], *, channel_axis: int, flatten: bool, name: str | None
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
