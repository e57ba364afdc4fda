"""The reader registry: one :class:`Reader` per input format, found by file suffix.

A format is one class: its suffixes, how it is named in messages, whether its files hold
arrays by name, which optional library (and extra) it needs, how it lists the arrays of a
file and how it opens one as a :class:`~latentcheck.io.member.Member`. Registering an
instance with :func:`register_reader` is all it takes for :func:`~latentcheck.open_latents`,
``analyze``, ``compare`` and the CLI to read it. Files that each hold one sample are
handled above the readers, for every format alike (:mod:`latentcheck.io.persample`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import FormatError

if TYPE_CHECKING:
    from .keys import Chooser
    from .member import Member
    from .remote import RemotePath

__all__ = [
    "Reader",
    "reader_for",
    "register_reader",
    "registered_readers",
    "supported",
    "unregister_reader",
]


class Reader:
    """One input format: detection, listing, opening and the library it needs.

    Subclasses set the class attributes and implement :meth:`keys` and :meth:`open`;
    readers that can read through fsspec (``s3://``, ``memory://``…) also implement
    :meth:`keys_remote` and :meth:`open_remote` and set ``remote = True``.
    """

    #: Short name of the format (``"npy"``, ``"hdf5"``…).
    name: ClassVar[str] = ""
    #: File suffixes, lower case with the dot; the first is the one named in messages.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: How the format is listed among the formats latentcheck reads.
    shown: ClassVar[str] = ""
    #: True if files hold several arrays by name (so ``--key`` applies).
    keyed: ClassVar[bool] = True
    #: The module to import to read the format, and the extra that installs it.
    library: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None
    #: True if the format's files are directories (stores).
    directory: ClassVar[bool] = False
    #: True if paths with a protocol (fsspec) can be read.
    remote: ClassVar[bool] = False

    def detect(self, path: Path | RemotePath) -> bool:
        """Return True if `path`, whose suffix no reader claims, is of this format."""
        del path
        return False

    def load_library(self) -> Any:
        """Import and return :attr:`library`, or raise FormatError naming the extra."""
        if self.library is None:
            return None
        try:
            return importlib.import_module(self.library)
        except ImportError:
            raise FormatError(
                f"Reading {self.suffixes[0]} files needs {self.library}: "
                f"pip install 'latentcheck[{self.extra}]'"
            ) from None

    def keys(self, path: Path) -> list[str] | None:
        """Return the names of the arrays in `path`, or None for one unnamed array."""
        raise NotImplementedError

    def open(self, path: Path, choose: Chooser) -> Member:
        """Open the array of `path` that `choose` picks from the file's names."""
        raise NotImplementedError

    def keys_remote(self, path: RemotePath) -> list[str] | None:
        """Return the names of the arrays in a remote file (see :meth:`keys`)."""
        raise FormatError(self.no_remote(path))

    def open_remote(self, path: RemotePath, choose: Chooser) -> Member:
        """Open an array of a remote file (see :meth:`open`)."""
        raise FormatError(self.no_remote(path))

    def no_remote(self, path: RemotePath) -> str:
        """Return the message for a format that cannot be read through fsspec."""
        able = ", ".join(r.shown for r in registered_readers() if r.remote)
        return (
            f"{path}: {self.shown} files are read from local paths only; copy it to a local "
            f"disk, or store the latents as {able}"
        )


#: The registered readers by name, in registration order; :mod:`latentcheck.io` registers
#: the built-in ones (:mod:`latentcheck.io.readers`) when it is first imported.
_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader, *, replace: bool = False) -> Reader:
    """Register `reader` for its suffixes; return it.

    Raises
    ------
    ValueError
        Another reader already has the name or one of the suffixes (pass ``replace=True``
        to take them over).
    """
    if not reader.name or not reader.shown:
        raise ValueError("a Reader needs a name and the text shown for it")
    for other in list(_READERS.values()):
        clash = other.name == reader.name or set(other.suffixes) & set(reader.suffixes)
        if clash and not replace:
            raise ValueError(
                f"reader {reader.name!r} clashes with the registered reader {other.name!r}"
            )
        if clash:
            del _READERS[other.name]
    _READERS[reader.name] = reader
    return reader


def unregister_reader(name: str) -> None:
    """Remove the reader called `name` (no error if there is none)."""
    _READERS.pop(name, None)


def registered_readers() -> list[Reader]:
    """Return the registered readers, in registration order (the built-in ones first)."""
    return list(_READERS.values())


def supported() -> str:
    """Return the list of readable formats, for messages."""
    return ", ".join(r.shown for r in registered_readers())


def find_reader(path: Path | RemotePath) -> Reader | None:
    """Return the reader of `path` by suffix (then by content), or None."""
    suffix = path.suffix.lower()
    found = [r for r in registered_readers() if suffix in r.suffixes]
    if found:
        return found[0]
    for r in registered_readers():
        if r.detect(path):
            return r
    return None


def reader_for(path: Path | RemotePath) -> Reader:
    """Return the reader of `path`, or raise FormatError listing the formats."""
    reader = find_reader(path)
    if reader is None:
        ext = path.suffix.lower()
        raise FormatError(
            f"Unknown file type {ext or '(no extension)'!r} for {path}; "
            f"latentcheck reads {supported()}"
        )
    return reader
