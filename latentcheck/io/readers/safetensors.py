"""``.safetensors`` files, read by the safetensors library (extra ``safetensors``).

Tensors are memory-mapped by the library and sliced along axis 0; dtypes numpy lacks
(bfloat16, float8) are sliced as torch tensors and converted to float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..._validation import check_shape
from ...errors import FormatError
from ..keys import Chooser, label_of
from ..member import Member, SlicedArray
from ..registry import Reader
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


class SafetensorsReader(Reader):
    """``.safetensors`` files of named tensors."""

    name = "safetensors"
    suffixes = (".safetensors",)
    shown = ".safetensors"
    library = "safetensors"
    extra = "safetensors"

    def keys(self, path: Path) -> list[str] | None:
        """Return the tensor names."""
        return safetensors_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the tensor that `choose` picks, for sliced reads."""
        return open_safetensors(path, choose)


SAFETENSORS = SafetensorsReader()
