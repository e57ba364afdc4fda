"""Readers for the formats of optional libraries: safetensors, HDF5, Zarr and PyTorch.

Each reader lists the named arrays of a file and opens one as an array-like whose
``[start:stop]`` reads and converts only those items along axis 0, so no file is read
whole. The libraries are imported when a file of their format is opened; a missing one is
a :class:`~latentcheck.errors.FormatError` naming the extra to install. PyTorch files are
loaded with ``weights_only=True`` only: anything but tensors is refused, never unpickled.
The rules every file of named arrays shares (``.npz`` included) live here too: the names
looked for per role (:data:`NPZ_ROLES`) and how the array to read is chosen.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import check_shape
from .errors import FormatError, InputError

#: Format name by file extension (``.zarr`` stores are directories).
EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".safetensors": "safetensors",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".zarr": "zarr",
    ".pt": "torch",
    ".pth": "torch",
}

#: Formats whose files hold several arrays by name.
KEYED = ("npz", "safetensors", "hdf5", "zarr", "torch")

#: (module, extra, how the format is named in messages) of the optional formats.
_LIBRARIES: dict[str, tuple[str, str, str]] = {
    "safetensors": ("safetensors", "safetensors", ".safetensors"),
    "hdf5": ("h5py", "hdf5", ".h5"),
    "zarr": ("zarr", "zarr", ".zarr"),
    "torch": ("torch", "torch", ".pt"),
}

#: safetensors dtype codes numpy represents; others (BF16, F8_*) are read through torch.
_SAFETENSORS_NUMPY: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}

#: Marker files of a Zarr store (v2 array, v2 group, v3 node).
_ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")

#: Key lists in messages stop after this many names.
_MAX_LISTED = 20

#: Keys recognised by name in files of named arrays (``.npz``, ``.safetensors``, ``.h5``,
#: Zarr groups, ``.pt`` dicts), per role, in order of preference.
NPZ_ROLES: dict[str, tuple[str, ...]] = {
    "z": ("z", "latents", "latent", "samples", "z_sample", "x"),
    "mu": ("mu", "mean", "z_mean", "means", "loc"),
    "logvar": ("logvar", "log_var", "z_log_var", "logvariance", "log_variance"),
    "std": ("std", "sigma", "scale", "z_std", "stddev"),
    "var": ("var", "variance", "z_var"),
}

#: The formats latentcheck reads, for messages.
SUPPORTED = ".npy, .npz, .safetensors, .h5/.hdf5, .zarr (directory store), .pt/.pth"

#: The formats whose files hold arrays by name, for messages about --key.
_KEYED_SHOWN = ".safetensors, .h5, Zarr groups, .pt dicts"


def file_format(path: Path) -> str | None:
    """Return the format name of `path` by extension (or Zarr markers), None if unknown."""
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None and path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS):
        return "zarr"
    return fmt


def is_zarr_store(path: Path) -> bool:
    """Return True if `path` is a directory read as a Zarr store."""
    return path.is_dir() and file_format(path) == "zarr"


def list_keys(keys: list[str]) -> str:
    """Return `keys` joined for a message, shortened when there are many."""
    if len(keys) <= _MAX_LISTED:
        return ", ".join(keys)
    return f"{', '.join(keys[:_MAX_LISTED])}, … ({len(keys)} in all)"


def choose_key(path: Path, keys: list[str] | None, key: str | None, role: str) -> str | None:
    """Return the array of `path` to read for `role` among `keys` (None: the unnamed one)."""
    if keys is None:
        if key is not None:
            kind = "a .npy file" if path.suffix.lower() == ".npy" else "one unnamed array"
            raise InputError(
                f"--key applies to .npz files and other files of named arrays "
                f"({_KEYED_SHOWN}), but {path} is {kind}; leave out --key"
            )
        return None
    if key is not None:
        if key not in keys and key.strip("/") in keys:  # HDF5 and Zarr absolute paths
            key = key.strip("/")
        if key not in keys:
            held = list_keys(keys) if keys else "no arrays"
            raise FormatError(f"{path} has no array named {key!r}; it holds {held}")
        return key
    if len(keys) == 1:
        return keys[0]
    for candidate in NPZ_ROLES[role]:
        if candidate in keys:
            return candidate
    if not keys:
        raise FormatError(f"{path} holds no arrays")
    raise FormatError(
        f"{path} holds {len(keys)} arrays ({list_keys(keys)}) and none is named like "
        f"latents ({', '.join(NPZ_ROLES[role])}); choose one with --key"
    )


def import_library(fmt: str) -> Any:
    """Import and return the library that reads `fmt`, or raise FormatError with the fix."""
    module, extra, shown = _LIBRARIES[fmt]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FormatError(
            f"Reading {shown} files needs {module}: pip install 'latentcheck[{extra}]'"
        ) from None


def _torch_or_none() -> Any:
    """Return the torch module if it can be imported, else None."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


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
    ) -> None:
        self.data = data
        self.shape = shape
        self.dtype = dtype
        self.convert = convert
        self.label = "an array"  # the shard's name, set when it is opened

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


@dataclass
class Opened:
    """One array opened from a file of an optional format, ready to become a shard.

    Attributes
    ----------
    label : str
        ``path[key]``, or the path for a file of one unnamed array.
    shape, dtype
        Shape and the dtype blocks are delivered in (after any conversion).
    array : SlicedArray
        Lazy ``[start:stop]`` reads.
    close : callable or None
        Releases the file handle.
    notes : list of str
        Conversions and memory notes for the report.
    """

    label: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    array: SlicedArray
    close: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)


def keys(path: Path, fmt: str) -> list[str] | None:
    """Return the array names in `path` of format `fmt`, or None for one unnamed array."""
    if fmt == "safetensors":
        return _safetensors_keys(path)
    if fmt == "hdf5":
        return _h5_keys(path)
    if fmt == "zarr":
        return _zarr_keys(path)
    if fmt == "torch":
        tensors = _torch_tensors(_torch_load(path)[0], path)
        return None if tensors is None else list(tensors)
    raise AssertionError(f"no reader for format {fmt}")  # internal: callers dispatch


def open_array(path: Path, fmt: str, choose: Callable[[list[str] | None], str | None]) -> Opened:
    """Open the array of `path` that `choose` picks from the file's keys (None: unnamed)."""
    if fmt == "safetensors":
        return _open_safetensors(path, choose)
    if fmt == "hdf5":
        return _open_h5(path, choose)
    if fmt == "zarr":
        return _open_zarr(path, choose)
    if fmt == "torch":
        return _open_torch(path, choose)
    raise AssertionError(f"no reader for format {fmt}")  # internal: callers dispatch


def _label(path: Path, key: str | None) -> str:
    """Return ``path[key]``, or the path for an unnamed array."""
    return str(path) if key is None else f"{path}[{key}]"


# --- safetensors ---------------------------------------------------------------------------


def _safe_open(path: Path, framework: str) -> Any:
    """Return a safetensors handle on `path` (memory-mapped; tensors are read on slicing)."""
    st = import_library("safetensors")
    try:
        return st.safe_open(os.fspath(path), framework=framework)
    except (st.SafetensorError, OSError) as exc:
        raise FormatError(f"{path} is not a readable .safetensors file ({exc})") from None


def _safetensors_keys(path: Path) -> list[str]:
    """Return the tensor names of a .safetensors file."""
    handle = _safe_open(path, "numpy")
    with handle:
        return list(handle.keys())


def _open_safetensors(path: Path, choose: Callable[[list[str] | None], str | None]) -> Opened:
    """Open one tensor of a .safetensors file for sliced reads."""
    handle = _safe_open(path, "numpy")
    try:
        key = choose(list(handle.keys()))
    except BaseException:
        handle.__exit__(None, None, None)
        raise
    assert key is not None  # safetensors always names its tensors
    label = _label(path, key)
    piece = handle.get_slice(key)
    shape = tuple(int(s) for s in piece.get_shape())
    code = str(piece.get_dtype())
    if code in _SAFETENSORS_NUMPY:
        dtype = np.dtype(_SAFETENSORS_NUMPY[code])
        return Opened(label, shape, dtype, SlicedArray(piece, shape, dtype), _exit(handle))
    handle.__exit__(None, None, None)
    # numpy has no bfloat16 or float8: the "pt" framework slices them as torch tensors
    name = {"BF16": "bfloat16"}.get(code, code.lower())
    if _torch_or_none() is None:
        raise FormatError(
            f"{label} holds {name} values, which numpy cannot represent; install torch to "
            "read them (pip install 'latentcheck[torch]') or save the latents as float32"
        )
    check_shape(shape, label)
    handle = _safe_open(path, "pt")
    piece = handle.get_slice(key)
    dtype, convert, note = _torch_conversion(piece[0:0].dtype, label)
    array = SlicedArray(piece, shape, dtype, convert)
    return Opened(label, shape, dtype, array, _exit(handle), [note] if note else [])


def _exit(handle: Any) -> Callable[[], None]:
    """Return a function that closes a context-manager handle."""
    return lambda: handle.__exit__(None, None, None)


# --- HDF5 ----------------------------------------------------------------------------------


def _h5_open(path: Path) -> Any:
    """Return an open read-only h5py File."""
    h5py = import_library("hdf5")
    try:
        return h5py.File(os.fspath(path), "r")
    except OSError as exc:
        raise FormatError(f"{path} is not a readable HDF5 file ({exc})") from None


def _h5_datasets(fh: Any) -> list[str]:
    """Return the paths of every dataset in an open h5py File, ``group/name`` for nested."""
    h5py = import_library("hdf5")
    found: list[str] = []
    fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _h5_keys(path: Path) -> list[str]:
    """Return the dataset paths of an HDF5 file."""
    with _h5_open(path) as fh:
        return _h5_datasets(fh)


def _open_h5(path: Path, choose: Callable[[list[str] | None], str | None]) -> Opened:
    """Open one dataset of an HDF5 file; the file stays open until the shard is closed."""
    fh = _h5_open(path)
    try:
        key = choose(_h5_datasets(fh))
        assert key is not None  # HDF5 datasets always have names
        label = _label(path, key)
        ds = fh[key]
        if ds.shape is None:
            raise FormatError(f"{label} is an empty HDF5 dataset (no dataspace); it holds no data")
        if import_library("hdf5").check_string_dtype(ds.dtype) is not None:
            raise FormatError(f"{label} holds strings, not numbers; choose the latents with --key")
    except BaseException:
        fh.close()
        raise
    shape = tuple(int(s) for s in ds.shape)
    dtype = np.dtype(ds.dtype)
    return Opened(label, shape, dtype, SlicedArray(ds, shape, dtype), fh.close)


# --- Zarr ----------------------------------------------------------------------------------


def _zarr_open(path: Path) -> Any:
    """Return the Zarr array or group at `path`, read-only."""
    zarr = import_library("zarr")
    try:
        return zarr.open(os.fspath(path), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path} is not a readable Zarr store ({exc})") from None


def _zarr_arrays(node: Any, prefix: str = "") -> Iterator[str]:
    """Yield the paths of the arrays in a Zarr group, ``group/name`` for nested ones."""
    for name, _ in node.arrays():
        yield prefix + name
    for name, sub in node.groups():
        yield from _zarr_arrays(sub, f"{prefix}{name}/")


def _zarr_keys(path: Path) -> list[str] | None:
    """Return the array paths of a Zarr group, or None for a store that is one array."""
    node = _zarr_open(path)
    return list(_zarr_arrays(node)) if hasattr(node, "arrays") else None


def _open_zarr(path: Path, choose: Callable[[list[str] | None], str | None]) -> Opened:
    """Open a Zarr array, or one array of a group; slicing reads only the chunks it needs."""
    node = _zarr_open(path)
    if hasattr(node, "arrays"):
        key = choose(list(_zarr_arrays(node)))
        assert key is not None  # arrays of a group are always chosen by name
        node = node[key]
    else:
        key = choose(None)
    shape = tuple(int(s) for s in node.shape)
    dtype = np.dtype(node.dtype)
    return Opened(_label(path, key), shape, dtype, SlicedArray(node, shape, dtype))


# --- PyTorch -------------------------------------------------------------------------------


def _torch_load(path: Path) -> tuple[Any, str | None]:
    """Return (the object saved in `path`, a memory note), loading tensors only.

    ``weights_only=True`` restricts unpickling to tensors and plain containers, so no code
    from the file runs. ``mmap=True`` maps the tensor data instead of reading it; files in
    the legacy (pre-1.6) format cannot be mapped and are read into memory.
    """
    torch = import_library("torch")
    # the restricted loader's refusal; taken from torch so that this module needs no pickle
    refused = torch.serialization.pickle.UnpicklingError
    note = None
    try:
        with warnings.catch_warnings():
            # torch's warning suggests loading without the weights-only restriction, which
            # latentcheck never does
            warnings.simplefilter("ignore", UserWarning)
            try:
                obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
                note = (
                    f"{path} is in PyTorch's legacy format, so it was read into memory; "
                    "re-save it with torch.save (PyTorch 1.6 or later) to stream it"
                )
    except refused as exc:
        if "weights only" in str(exc).lower():
            raise FormatError(
                f"{path} holds non-tensor objects that only unpickling could read, and "
                "latentcheck never unpickles; save the latents as tensors, e.g. "
                "torch.save({'z': z}, path), or as .npy/.safetensors"
            ) from None
        raise FormatError(f"{path} is not a readable PyTorch file ({exc})") from None
    except (RuntimeError, EOFError, KeyError, IndexError, TypeError, ValueError, OSError) as exc:
        # what torch's restricted unpickler raises on bytes that are no pickle stream
        raise FormatError(f"{path} is not a readable PyTorch file ({exc!r})") from None
    return obj, note


def _torch_tensors(obj: Any, path: Path) -> dict[str, Any] | None:
    """Return the tensors of a loaded object by name (``a/b`` when nested), None if a tensor."""
    torch = import_library("torch")
    if isinstance(obj, torch.Tensor):
        return None
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, torch.Tensor):
            found[prefix.rstrip("/")] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}/")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{prefix}{i}/")

    walk(obj, "")
    if not found:
        raise FormatError(
            f"{path} holds a {type(obj).__name__} with no tensors; save the latents as a "
            "tensor or a dict of tensors"
        )
    return found


def _torch_conversion(
    dtype: Any, label: str
) -> tuple[np.dtype[Any], Callable[[Any], NDArray[Any]], str | None]:
    """Return (numpy dtype, tensor→ndarray conversion, note) for tensors of `dtype`."""
    torch = import_library("torch")
    try:
        target = np.dtype(torch.empty(0, dtype=dtype).numpy().dtype)
    except (TypeError, RuntimeError):
        name = str(dtype).removeprefix("torch.")
        if not dtype.is_floating_point:
            raise FormatError(
                f"{label} holds {name} values, which latentcheck cannot read; "
                "save the latents as float32"
            ) from None
        # bfloat16 and float8 have no numpy dtype; float32 holds each of their values exactly
        return (
            np.dtype(np.float32),
            lambda t: t.detach().float().numpy(),
            f"{label}: {name} values were converted to float32",
        )
    return target, _readonly_view, None


def _readonly_view(tensor: Any) -> NDArray[Any]:
    """Return a read-only ndarray view of a CPU tensor (pages of a .pt file stay untouched)."""
    out: NDArray[Any] = tensor.detach().numpy()
    out.flags.writeable = False
    return out


def tensor_to_numpy(tensor: Any, label: str) -> tuple[NDArray[Any], str | None]:
    """Return an in-memory torch tensor as an ndarray (bfloat16 → float32), and a note."""
    torch = sys.modules.get("torch")  # a tensor implies torch is imported; never import it
    if torch is None or not isinstance(tensor, torch.Tensor):  # duck-typed tensor-likes
        return np.asarray(tensor.detach().cpu().numpy()), None
    _, convert, note = _torch_conversion(tensor.dtype, label)
    return convert(tensor.cpu()), note


def _open_torch(path: Path, choose: Callable[[list[str] | None], str | None]) -> Opened:
    """Open a tensor of a .pt file; the memory map keeps reads to the sliced items."""
    obj, note = _torch_load(path)
    tensors = _torch_tensors(obj, path)
    if tensors is None:
        key, tensor = choose(None), obj
    else:
        key = choose(list(tensors))
        assert key is not None  # keys of a dict are always chosen by name
        tensor = tensors[key]
    label = _label(path, key)
    torch = import_library("torch")
    if tensor.layout != torch.strided:
        # sparse tensors cannot be sliced as views; torch's own error is a page long
        layout = str(tensor.layout).removeprefix("torch.")
        raise FormatError(
            f"{label} holds a {layout} tensor, which latentcheck reads only dense; save "
            "t.to_dense() instead"
        )
    dtype, convert, conv_note = _torch_conversion(tensor.dtype, label)
    shape = tuple(int(s) for s in tensor.shape)
    notes = [n for n in (note, conv_note) if n]
    return Opened(label, shape, dtype, SlicedArray(tensor, shape, dtype, convert), None, notes)
