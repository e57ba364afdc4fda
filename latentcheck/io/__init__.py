"""Input: readers of array files by format, the shards they open, and remote paths.

- :mod:`~latentcheck.io.registry`: the :class:`Reader` base class and the registry
  (a new input format is one ``Reader`` subclass registered with :func:`register_reader`);
- :mod:`~latentcheck.io.readers`: the built-in readers, one module per format;
- :mod:`~latentcheck.io.member`: :class:`Member`, one shard, and its lazy array-likes;
- :mod:`~latentcheck.io.keys`: which named array of a file to read.
"""

from __future__ import annotations

from .keys import NPZ_ROLES as NPZ_ROLES
from .member import Member as Member
from .readers import BUILTIN_READERS
from .registry import Reader as Reader
from .registry import reader_for as reader_for
from .registry import register_reader as register_reader
from .registry import registered_readers as registered_readers
from .registry import supported as supported
from .registry import unregister_reader as unregister_reader

for _builtin in BUILTIN_READERS:  # before any reader of a user's, so that clashes are found
    register_reader(_builtin)

__all__ = [
    "NPZ_ROLES",
    "Member",
    "Reader",
    "reader_for",
    "register_reader",
    "registered_readers",
    "supported",
    "unregister_reader",
]
