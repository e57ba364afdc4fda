"""PyTorch files (``.pt``, ``.pth``), loaded by torch (extra ``torch``) with ``weights_only``.

``weights_only=True`` restricts unpickling to tensors and plain containers: anything else
is refused, never unpickled. Tensors are memory-mapped and sliced along axis 0.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import FormatError
from ..keys import Chooser, label_of
from ..member import Member, SlicedArray
from ..registry import Reader

__all__ = ["TORCH", "TorchReader", "tensor_to_numpy", "torch_conversion", "torch_or_none"]


def torch_or_none() -> Any:
    """Return the torch module if it can be imported, else None."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def torch_load(path: Path) -> tuple[Any, str | None]:
    """Return (the object saved in `path`, a memory note), loading tensors only.

    ``weights_only=True`` restricts unpickling to tensors and plain containers, so no code
    from the file runs. ``mmap=True`` maps the tensor data instead of reading it; files in
    the legacy (pre-1.6) format cannot be mapped and are read into memory.
    """
    torch = TORCH.load_library()
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


def torch_tensors(obj: Any, path: Path) -> dict[str, Any] | None:
    """Return the tensors of a loaded object by name (``a/b`` when nested), None if a tensor."""
    torch = TORCH.load_library()
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


def torch_conversion(
    dtype: Any, label: str
) -> tuple[np.dtype[Any], Callable[[Any], NDArray[Any]], str | None]:
    """Return (numpy dtype, tensor→ndarray conversion, note) for tensors of `dtype`."""
    torch = TORCH.load_library()
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
    _, convert, note = torch_conversion(tensor.dtype, label)
    return convert(tensor.cpu()), note


def open_torch(path: Path, choose: Chooser) -> Member:
    """Open a tensor of a .pt file; the memory map keeps reads to the sliced items."""
    obj, note = torch_load(path)
    tensors = torch_tensors(obj, path)
    if tensors is None:
        key, tensor = choose(None), obj
    else:
        key = choose(list(tensors))
        assert key is not None  # keys of a dict are always chosen by name
        tensor = tensors[key]
    label = label_of(path, key)
    torch = TORCH.load_library()
    if tensor.layout != torch.strided:
        # sparse tensors cannot be sliced as views; torch's own error is a page long
        layout = str(tensor.layout).removeprefix("torch.")
        raise FormatError(
            f"{label} holds a {layout} tensor, which latentcheck reads only dense; save "
            "t.to_dense() instead"
        )
    dtype, convert, conv_note = torch_conversion(tensor.dtype, label)
    shape = tuple(int(s) for s in tensor.shape)
    notes = [n for n in (note, conv_note) if n]
    array = SlicedArray(tensor, shape, dtype, convert, label=label)
    return Member(label, shape, dtype, array, notes=notes)


class TorchReader(Reader):
    """PyTorch files of one tensor or of (nested) dicts and lists of tensors."""

    name = "torch"
    suffixes = (".pt", ".pth")
    shown = ".pt/.pth"
    library = "torch"
    extra = "torch"

    def keys(self, path: Path) -> list[str] | None:
        """Return the tensor names (``a/b`` when nested), or None for one tensor."""
        tensors = torch_tensors(torch_load(path)[0], path)
        return None if tensors is None else list(tensors)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the tensor that `choose` picks."""
        return open_torch(path, choose)


TORCH = TorchReader()
