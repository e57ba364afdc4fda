"""HDF5 files (``.h5``, ``.hdf5``), read by h5py (extra ``hdf5``), one slice at a time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FormatError
from ..keys import Chooser, label_of
from ..member import Member, SlicedArray
from ..registry import Reader

__all__ = ["HDF5", "Hdf5Reader"]


def _h5_open(path: Path) -> Any:
    """Return an open read-only h5py File."""
    h5py = HDF5.load_library()
    try:
        return h5py.File(os.fspath(path), "r")
    except OSError as exc:
        raise FormatError(f"{path} is not a readable HDF5 file ({exc})") from None


def _h5_datasets(fh: Any) -> list[str]:
    """Return the paths of every dataset in an open h5py File, ``group/name`` for nested."""
    h5py = HDF5.load_library()
    found: list[str] = []
    fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def h5_keys(path: Path) -> list[str]:
    """Return the dataset paths of an HDF5 file."""
    with _h5_open(path) as fh:
        return _h5_datasets(fh)


def open_h5(path: Path, choose: Chooser) -> Member:
    """Open one dataset of an HDF5 file; the file stays open until the shard is closed."""
    fh = _h5_open(path)
    try:
        key = choose(_h5_datasets(fh))
        assert key is not None  # HDF5 datasets always have names
        label = label_of(path, key)
        ds = fh[key]
        if ds.shape is None:
            raise FormatError(f"{label} is an empty HDF5 dataset (no dataspace); it holds no data")
        if HDF5.load_library().check_string_dtype(ds.dtype) is not None:
            raise FormatError(f"{label} holds strings, not numbers; choose the latents with --key")
    except BaseException:
        fh.close()
        raise
    shape = tuple(int(s) for s in ds.shape)
    dtype = np.dtype(ds.dtype)
    array = SlicedArray(ds, shape, dtype, label=label)
    return Member(label, shape, dtype, array, closer=fh.close)


class Hdf5Reader(Reader):
    """HDF5 files of named datasets (``group/name`` when nested)."""

    name = "hdf5"
    suffixes = (".h5", ".hdf5")
    shown = ".h5/.hdf5"
    library = "h5py"
    extra = "hdf5"

    def keys(self, path: Path) -> list[str] | None:
        """Return the dataset paths."""
        return h5_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the dataset that `choose` picks; the file stays open until closed."""
        return open_h5(path, choose)


HDF5 = Hdf5Reader()
