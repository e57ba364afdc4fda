"""The built-in readers, one module per format (see :mod:`latentcheck.io.registry`)."""

from __future__ import annotations

from ..registry import Reader
from .hdf5 import HDF5
from .npy import NpyReader
from .npz import NpzReader
from .safetensors import SAFETENSORS
from .torch import TORCH
from .zarr import ZARR

__all__ = ["BUILTIN_READERS"]

#: In the order the formats are listed in messages.
BUILTIN_READERS: tuple[Reader, ...] = (NpyReader(), NpzReader(), SAFETENSORS, HDF5, ZARR, TORCH)
