"""Zarr stores (directories), read by zarr (extra ``zarr``): slices read only their chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FormatError
from ..keys import Chooser, label_of
from ..member import Member, SlicedArray
from ..registry import Reader
from ..remote import RemotePath, storage_options

__all__ = ["ZARR", "ZarrReader"]

#: Marker files of a Zarr store (v2 array, v2 group, v3 node).
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")


def _zarr_open(path: Path | RemotePath) -> Any:
    """Return the Zarr array or group at `path`, read-only (remote: through fsspec)."""
    zarr = ZARR.load_library()
    try:
        if isinstance(path, Path):
            return zarr.open(os.fspath(path), mode="r")
        return zarr.open(path.url, mode="r", storage_options=storage_options() or None)
    except (OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path} is not a readable Zarr store ({exc})") from None


def _zarr_arrays(node: Any, prefix: str = "") -> Iterator[str]:
    """Yield the paths of the arrays in a Zarr group, ``group/name`` for nested ones."""
    for name, _ in node.arrays():
        yield prefix + name
    for name, sub in node.groups():
        yield from _zarr_arrays(sub, f"{prefix}{name}/")


def zarr_keys(path: Path | RemotePath) -> list[str] | None:
    """Return the array paths of a Zarr group, or None for a store that is one array."""
    node = _zarr_open(path)
    return list(_zarr_arrays(node)) if hasattr(node, "arrays") else None


def open_zarr(path: Path | RemotePath, choose: Chooser) -> Member:
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
    label = label_of(path, key)
    return Member(label, shape, dtype, SlicedArray(node, shape, dtype, label=label))


class ZarrReader(Reader):
    """Zarr directory stores: one array, or a group of named arrays."""

    name = "zarr"
    suffixes = (".zarr",)
    shown = ".zarr (directory store)"
    library = "zarr"
    extra = "zarr"
    directory = True
    remote = True

    def detect(self, path: Path | RemotePath) -> bool:
        """Return True for a directory holding a Zarr marker file, whatever its name."""
        return path.is_dir() and any((path / m).exists() for m in ZARR_MARKERS)

    def keys(self, path: Path) -> list[str] | None:
        """Return the array paths of a group, or None for a store that is one array."""
        return zarr_keys(path)

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the array, or the array of the group that `choose` picks."""
        return open_zarr(path, choose)

    def keys_remote(self, path: RemotePath) -> list[str] | None:
        """Return the array paths of a remote group, or None for one array."""
        return zarr_keys(path)

    def open_remote(self, path: RemotePath, choose: Chooser) -> Member:
        """Open a remote Zarr array (zarr reads only the chunks a slice needs)."""
        return open_zarr(path, choose)


ZARR = ZarrReader()
