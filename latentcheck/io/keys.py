"""Which array of a file of named arrays to read: the names looked for per role.

Every format whose files hold several arrays by name (``.npz``, ``.safetensors``, ``.h5``,
Zarr groups, ``.pt`` dicts) shares these rules: an explicit ``key``, else the only array,
else the first name of :data:`NPZ_ROLES` for the role that the file holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import FormatError, InputError

__all__ = ["NPZ_ROLES", "Chooser", "choose_key", "chooser", "label_of", "list_keys"]

#: Given the names a file holds (None: one unnamed array), return the one to read.
Chooser = Callable[[list[str] | None], str | None]

#: Key lists in messages stop after this many names.
MAX_LISTED = 20

#: Keys recognised by name in files of named arrays (``.npz``, ``.safetensors``, ``.h5``,
#: Zarr groups, ``.pt`` dicts), per role, in order of preference.
NPZ_ROLES: dict[str, tuple[str, ...]] = {
    "z": ("z", "latents", "latent", "samples", "z_sample", "x"),
    "mu": ("mu", "mean", "z_mean", "means", "loc"),
    "logvar": ("logvar", "log_var", "z_log_var", "logvariance", "log_variance"),
    "std": ("std", "sigma", "scale", "z_std", "stddev"),
    "var": ("var", "variance", "z_var"),
}

#: The formats whose files hold arrays by name, for messages about --key.
KEYED_SHOWN = ".safetensors, .h5, Zarr groups, .pt dicts"


def list_keys(keys: list[str]) -> str:
    """Return `keys` joined for a message, shortened when there are many."""
    if len(keys) <= MAX_LISTED:
        return ", ".join(keys)
    return f"{', '.join(keys[:MAX_LISTED])}, … ({len(keys)} in all)"


def choose_key(path: Any, keys: list[str] | None, key: str | None, role: str) -> str | None:
    """Return the array of `path` to read for `role` among `keys` (None: the unnamed one)."""
    if keys is None:
        if key is not None:
            kind = "a .npy file" if str(path).lower().endswith(".npy") else "one unnamed array"
            raise InputError(
                f"--key applies to .npz files and other files of named arrays "
                f"({KEYED_SHOWN}), but {path} is {kind}; leave out --key"
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


def chooser(path: Any, key: str | None, role: str) -> Chooser:
    """Return the :data:`Chooser` of `key` for `role` in the file at `path`."""
    return lambda keys: choose_key(path, keys, key, role)


def label_of(path: object, key: str | None) -> str:
    """Return ``path[key]``, or the path for an unnamed array."""
    return str(path) if key is None else f"{path}[{key}]"
