"""Remote inputs: paths with a protocol, read through fsspec with ranged reads.

Protocols are those of fsspec and its backends (``s3://``, ``gs://``, ``hf://``,
``https://``, ``file://``, ``memory://``…; extra ``remote``, and ``s3`` for s3fs).
A :class:`RemotePath` names one file of a filesystem; :class:`RangedFile` is a read-only
file over it that fetches only the byte ranges asked for (headers, zip directories), and
:class:`RangedArray` reads the items ``[start:stop]`` of an array stored contiguously at a
byte offset, one ranged read per block: a ``.npy`` file is never downloaded whole.
Storage options (credentials, endpoints) are set for the duration of an ``analyze`` or
``compare`` call with :func:`using_storage_options`, and kept by the filesystem each file
was opened with; they are never written into a report.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import math
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, InputError

__all__ = [
    "RangedArray",
    "RangedFile",
    "RemotePath",
    "expand_remote",
    "has_protocol",
    "storage_options",
    "using_storage_options",
    "with_storage_options",
]

P = ParamSpec("P")
R = TypeVar("R")

#: ``scheme://`` at the start of a path (two letters or more: ``C:\\`` is a drive).
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")

#: Storage options of the current call (see :func:`using_storage_options`).
_OPTIONS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "latentcheck_storage_options", default=None
)

#: Bytes fetched ahead by small reads of a :class:`RangedFile` (headers, zip records).
READ_AHEAD = 1 << 16


def has_protocol(text: str) -> bool:
    """Return True if `text` is a URL with a protocol, read through fsspec."""
    return _PROTOCOL.match(text) is not None


@contextlib.contextmanager
def using_storage_options(options: Mapping[str, Any] | None) -> Iterator[None]:
    """Open remote paths with `options` (passed to the fsspec filesystem) in this block."""
    if options is not None and not isinstance(options, Mapping):
        raise InputError(
            f"storage_options must be a dict of fsspec options, got {type(options).__name__}"
        )
    token = _OPTIONS.set(options if options is not None else _OPTIONS.get())
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def with_storage_options(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate `func` to take ``storage_options=`` and open remote paths with them.

    The keyword is taken out of the call: `func` itself never sees it, and neither does
    anything it forwards its keywords to (so credentials never reach a report).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        options: Any = kwargs.pop("storage_options", None)
        with using_storage_options(options):
            return func(*args, **kwargs)

    return wrapper


def storage_options() -> dict[str, Any]:
    """Return the storage options of the current call (empty if none were given)."""
    return dict(_OPTIONS.get() or {})


def _filesystem(url: str) -> tuple[Any, str]:
    """Return (fsspec filesystem, path within it) for `url`, with the current options."""
    scheme = _PROTOCOL.match(url)
    protocol = scheme.group(1) if scheme else "?"
    try:
        fsspec = importlib.import_module("fsspec")
    except ImportError:
        raise FormatError(
            f"Reading {protocol}:// paths needs fsspec: pip install 'latentcheck[remote]'"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options())
    except ImportError as exc:  # the protocol's backend (s3fs, gcsfs, huggingface_hub…)
        raise FormatError(
            f"Reading {protocol}:// paths needs fsspec's backend for it ({exc}); "
            f"for s3:// pip install 'latentcheck[s3]'"
        ) from None
    except (ValueError, TypeError) as exc:  # unknown protocol, bad option
        raise FormatError(f"Cannot read {url}: {exc}") from None
    return fs, path


@dataclass(frozen=True)
class RemotePath:
    """One file (or directory store) of an fsspec filesystem, named by its URL."""

    fs: Any
    path: str
    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def suffix(self) -> str:
        """Return the file suffix, as :attr:`pathlib.Path.suffix`."""
        return posixpath.splitext(posixpath.basename(self.path.rstrip("/")))[1]

    @property
    def name(self) -> str:
        """Return the last part of the path."""
        return posixpath.basename(self.path.rstrip("/"))

    def __truediv__(self, child: str) -> RemotePath:
        return RemotePath(self.fs, f"{self.path.rstrip('/')}/{child}", f"{self.url}/{child}")

    def exists(self) -> bool:
        """Return True if the file or directory exists."""
        return bool(_guard(self, lambda: self.fs.exists(self.path)))

    def is_dir(self) -> bool:
        """Return True for a directory (a Zarr store)."""
        return bool(_guard(self, lambda: self.fs.isdir(self.path)))

    def size(self) -> int:
        """Return the size of the file in bytes."""
        return int(_guard(self, lambda: self.fs.size(self.path)))

    def read_range(self, start: int, stop: int) -> bytes:
        """Return bytes [start, stop) of the file (one ranged read)."""
        if stop <= start:
            return b""
        data = _guard(self, lambda: self.fs.cat_file(self.path, start=start, end=stop))
        return bytes(data)

    def read_ranges(self, starts: list[int], stops: list[int]) -> list[bytes]:
        """Return the byte ranges [starts[i], stops[i]) of the file."""
        paths = [self.path] * len(starts)
        got = _guard(self, lambda: self.fs.cat_ranges(paths, starts, stops, on_error="raise"))
        return [bytes(g) for g in got]


def _guard(path: RemotePath, call: Any) -> Any:
    """Run `call`, turning the filesystem's errors into FormatError naming `path`."""
    try:
        return call()
    except FileNotFoundError:
        raise FormatError(f"File not found: {path}") from None
    except FormatError:
        raise
    except Exception as exc:  # each backend raises its own types (botocore, aiohttp…)
        raise FormatError(f"Cannot read {path} ({type(exc).__name__}: {exc})") from None


def expand_remote(text: str) -> list[RemotePath]:
    """Return the files `text` names: one URL, or the sorted matches of a glob (``**`` recurses).

    Raises
    ------
    FormatError
        fsspec or the protocol's backend missing, no match, or a missing file.
    """
    fs, path = _filesystem(text)
    if any(ch in path for ch in "*?["):
        probe = RemotePath(fs, path, text)
        matches = sorted(_guard(probe, lambda: fs.glob(path)))
        if not matches:
            raise FormatError(f"No file matches the pattern {text}")
        return [RemotePath(fs, m, fs.unstrip_protocol(m)) for m in matches]
    found = RemotePath(fs, path, text)
    if not found.exists():
        raise FormatError(f"File not found: {text}")
    return [found]


class RangedFile:
    """A read-only, seekable binary file over a :class:`RemotePath`, read by ranges.

    Small reads fetch :data:`READ_AHEAD` bytes at once (headers are parsed in many small
    reads); a read never goes past the end of the file, so a header that declares more
    bytes than the file holds costs at most the file's size, as it does locally.
    """

    def __init__(self, path: RemotePath) -> None:
        self.path = path
        self.end = path.size()
        self.pos = 0
        self._buf = b""
        self._buf_at = 0

    def seekable(self) -> bool:
        """Return True: any offset can be read."""
        return True

    def readable(self) -> bool:
        """Return True."""
        return True

    def tell(self) -> int:
        """Return the current offset."""
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to `offset` from the start, the current offset or the end (`whence` 0, 1, 2)."""
        base = {0: 0, 1: self.pos, 2: self.end}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        """Return up to `n` bytes from the current offset (all that is left if `n` < 0)."""
        stop = self.end if n is None or n < 0 else min(self.end, self.pos + n)
        if stop <= self.pos:
            return b""
        lo, hi = self._buf_at, self._buf_at + len(self._buf)
        if not (lo <= self.pos and stop <= hi):
            fetch = max(stop, min(self.end, self.pos + READ_AHEAD))
            self._buf, self._buf_at = self.path.read_range(self.pos, fetch), self.pos
            lo = self.pos
        out = self._buf[self.pos - lo : stop - lo]
        self.pos += len(out)
        return out

    def close(self) -> None:
        """Drop the read-ahead buffer."""
        self._buf = b""

    def __enter__(self) -> RangedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RangedArray:
    """Items ``[start:stop]`` along axis 0 of an array stored at a byte offset of a file.

    C-ordered arrays are one ranged read per block; Fortran-ordered ones one range per
    column of the block (``cat_ranges``, a single request where the backend merges them).
    """

    def __init__(
        self,
        path: RemotePath,
        dtype: np.dtype[Any],
        offset: int,
        shape: tuple[int, ...],
        fortran: bool,
        label: str,
    ) -> None:
        self.path = path
        self.dtype = dtype
        self.offset = offset
        self.shape = shape
        self.fortran = fortran and len(shape) > 1
        self.label = label

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> NDArray[Any]:
        start, stop, _ = index.indices(self.shape[0])
        rest = self.shape[1:]
        n = max(0, stop - start)
        size = self.dtype.itemsize
        if n == 0:
            return np.empty((0, *rest), dtype=self.dtype)
        if not self.fortran:
            item = math.prod(rest) * size
            raw = self.path.read_range(self.offset + start * item, self.offset + stop * item)
            return self._shaped(raw, (n, *rest), n * item)
        m, rows = math.prod(rest), self.shape[0]
        starts = [self.offset + (c * rows + start) * size for c in range(m)]
        got = self.path.read_ranges(starts, [s + n * size for s in starts])
        block = self._shaped(b"".join(got), (m, n), m * n * size)
        return np.ascontiguousarray(block.T.reshape((n, *rest), order="F"))

    def _shaped(self, raw: bytes, shape: tuple[int, ...], expected: int) -> NDArray[Any]:
        """Return `raw` as an array of `shape`, or raise FormatError for a short read."""
        if len(raw) != expected:
            raise FormatError(
                f"{self.label}: short read ({len(raw)} of {expected} bytes); did the file change?"
            )
        return np.frombuffer(raw, dtype=self.dtype).reshape(shape)
