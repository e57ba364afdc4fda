"""``.safetensors`` files, read by the safetensors library (extra ``safetensors``).

Tensors are memory-mapped by the library and sliced along axis 0; dtypes numpy lacks
(bfloat16, float8) are sliced as torch tensors and converted to float32.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import FormatError
from ...validation import check_shape
from ..keys import Chooser, label_of
from ..member import Member, SlicedArray
from ..registry import Reader
from ..remote import RangedArray, RangedFile, RemotePath
from .torch import torch_conversion, torch_or_none

__all__ = ["SAFETENSORS", "SafetensorsReader"]

#: safetensors dtype codes numpy represents; others (BF16, F8_*) are read through torch.
SAFETENSORS_NUMPY: dict[str, str] = {
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


def _safe_open(path: Path, framework: str) -> Any:
    """Return a safetensors handle on `path` (memory-mapped; tensors are read on slicing)."""
    st = SAFETENSORS.load_library()
    try:
        return st.safe_open(os.fspath(path), framework=framework)
    except (st.SafetensorError, OSError) as exc:
        raise FormatError(f"{path} is not a readable .safetensors file ({exc})") from None


def safetensors_keys(path: Path) -> list[str]:
    """Return the tensor names of a .safetensors file."""
    handle = _safe_open(path, "numpy")
    with handle:
        return list(handle.keys())


def open_safetensors(path: Path, choose: Chooser) -> Member:
    """Open one tensor of a .safetensors file for sliced reads."""
    handle = _safe_open(path, "numpy")
    try:
        key = choose(list(handle.keys()))
    except BaseException:
        handle.__exit__(None, None, None)
        raise
    assert key is not None  # safetensors always names its tensors
    label = label_of(path, key)
    piece = handle.get_slice(key)
    shape = tuple(int(s) for s in piece.get_shape())
    code = str(piece.get_dtype())
    if code in SAFETENSORS_NUMPY:
        dtype = np.dtype(SAFETENSORS_NUMPY[code])
        array = SlicedArray(piece, shape, dtype, label=label)
        return Member(label, shape, dtype, array, closer=_exit(handle))
    handle.__exit__(None, None, None)
    # numpy has no bfloat16 or float8: the "pt" framework slices them as torch tensors
    name = {"BF16": "bfloat16"}.get(code, code.lower())
    if torch_or_none() is None:
        raise FormatError(
            f"{label} holds {name} values, which numpy cannot represent; install torch to "
            "read them (pip install 'latentcheck[torch]') or save the latents as float32"
        )
    check_shape(shape, label)
    handle = _safe_open(path, "pt")
    piece = handle.get_slice(key)
    dtype, convert, note = torch_conversion(piece[0:0].dtype, label)
    array = SlicedArray(piece, shape, dtype, convert, label=label)
    return Member(label, shape, dtype, array, closer=_exit(handle), notes=[note] if note else [])


def _exit(handle: Any) -> Callable[[], None]:
    """Return a function that closes a context-manager handle."""
    return lambda: handle.__exit__(None, None, None)


#: safetensors' own limit on the length of its JSON header.
MAX_HEADER = 100_000_000


def _bad(path: RemotePath, why: str) -> FormatError:
    """Return the error for a remote file that is not a readable .safetensors file."""
    return FormatError(f"{path} is not a readable .safetensors file ({why})")


def remote_header(path: RemotePath) -> tuple[dict[str, Any], int, int]:
    """Return (entries by tensor name, offset of the data, file size), by ranged reads.

    The format (Hugging Face safetensors): an 8-byte little-endian header length N, N
    bytes of JSON ``{name: {dtype, shape, data_offsets}}``, then the data.
    """
    with RangedFile(path) as fh:
        size = fh.end
        lead = fh.read(8)
        if len(lead) < 8:
            raise _bad(path, f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(lead, "little")
        if n > MAX_HEADER or 8 + n > size:
            raise _bad(path, f"its header declares {n} bytes and the file has {size}")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"its header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise _bad(path, "its header is not a JSON object")
    return {k: v for k, v in header.items() if k != "__metadata__"}, 8 + n, size


def _bfloat16_to_float32(raw: NDArray[Any]) -> NDArray[Any]:
    """Return bfloat16 bit patterns (uint16) as float32: the same value, exactly."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def open_safetensors_remote(path: RemotePath, choose: Chooser) -> Member:
    """Open one tensor of a remote .safetensors file for ranged reads."""
    entries, start, size = remote_header(path)
    key = choose(sorted(entries))
    assert key is not None  # safetensors always names its tensors
    label = label_of(path, key)
    try:
        entry = entries[key]
        code = str(entry["dtype"])
        shape = tuple(int(s) for s in entry["shape"])
        first, last = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"bad entry for {key!r}: {exc!r}") from None
    if code in SAFETENSORS_NUMPY:
        raw_dtype = np.dtype(SAFETENSORS_NUMPY[code]).newbyteorder("<")
    elif code != "BF16":
        raise FormatError(
            f"{label} holds {code.lower()} values, which latentcheck reads from remote "
            "paths only as float64, float32, float16, bfloat16 or integers; save the "
            "latents as float32"
        )
    else:
        raw_dtype = np.dtype("<u2")
    check_shape(shape, label)
    nbytes = math.prod(shape) * raw_dtype.itemsize
    if first < 0 or last - first != nbytes or start + last > size:
        raise FormatError(
            f"{label} is truncated or corrupt: its header promises shape {shape} of {code} "
            f"({nbytes} bytes) at bytes {first}-{last} of the data, and the file has {size}"
        )
    array = RangedArray(path, raw_dtype, start + first, shape, False, label)
    if code != "BF16":
        return Member(label, shape, raw_dtype, array)
    f32 = np.dtype(np.float32)
    sliced = SlicedArray(array, shape, f32, _bfloat16_to_float32, label=label)
    note = f"{label}: bfloat16 values were converted to float32"
    return Member(label, shape, f32, sliced, notes=[note])


class SafetensorsReader(Reader):
    """``.safetensors`` files of named tensors."""

    name = "safetensors"
    suffixes = (".safetensors",)
    shown = ".safetensors"
    library = "safetensors"
    extra = "safetensors"
    remote = True

    def keys(self, path: Path) -> list[str] | None:
        """Return the tensor names."""
        return safetensors_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the tensor that `choose` picks, for sliced reads."""
        return open_safetensors(path, choose)

    def keys_remote(self, path: RemotePath) -> list[str] | None:
        """Return the tensor names of a remote file (its header only; no library needed)."""
        return sorted(remote_header(path)[0])

    def open_remote(self, path: RemotePath, choose: Chooser) -> Member:
        """Open a tensor of a remote file for ranged reads."""
        return open_safetensors_remote(path, choose)


SAFETENSORS = SafetensorsReader()
