"""The ``.lcprof`` file format of saved profiles (issue 19): writing, reading, checking.

Format ``format_version`` 2: an uncompressed zip of ``.npy`` members (readable with
``np.load(..., allow_pickle=False)``; every member's bytes are covered by the zip's CRC-32),
written in a fixed member order with a fixed timestamp (1980-01-01 00:00:00) so that the
same profile always gives the same bytes, holding

- ``header``: UTF-8 JSON as uint8: ``format`` ("latentcheck-profile"),
  ``format_version``, ``latentcheck_version``, ``sketch`` (``library``, ``type``, ``k``),
  ``rows`` (the global row ranges ``[start, stop)`` the profile holds), ``sources``;
- ``stream.<name>``: the arrays of :meth:`latentcheck.stream.Stream.state`;
- ``sketch.bytes`` (uint8) and ``sketch.offsets`` (int64, n_dims + 1): the
  ``serialize()`` bytes of each dimension's DataSketches ``tdigest_double`` (t-digest),
  concatenated.

Version 1 (KLL and REQ sketches, whose compaction draws unseeded random bits) is refused
with a request to profile again. Readers refuse other versions, compressed members,
members larger than the file, arrays that disagree on the width, and sketches that do not
count the moments' rows: one :class:`~latentcheck.errors.FormatError` line each.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, LatentcheckError
from .sketches import MISSING, tdigest

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MISSING",
    "ProfileParts",
    "decode",
    "encode",
    "read_header",
    "tdigest",
]

#: Version of the ``.lcprof`` layout; readers refuse others.
#: 2: one t-digest per dimension (deterministic) replaces KLL + two REQ sketches.
FORMAT_VERSION = 2
FORMAT_NAME = "latentcheck-profile"
#: zip member timestamp: fixed, so that equal profiles are equal bytes
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ProfileParts:
    """What a ``.lcprof`` file holds: stream, t-digests, row ranges, sources."""

    stream: Any
    sketches: list[Any]
    rows: list[tuple[int, int]]
    sources: list[str]


def _pack(sketches: list[Any]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Return the concatenated ``serialize()`` bytes of `sketches` and their offsets."""
    blobs = [bytes(s.serialize()) for s in sketches]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _unpack(arrays: dict[str, NDArray[Any]], prefix: str, cls: Any, d: int, name: str) -> list[Any]:
    """Return the `d` sketches stored under `prefix`, checked."""
    try:
        blob = arrays[f"{prefix}.bytes"]
        offsets = arrays[f"{prefix}.offsets"]
    except KeyError as exc:
        raise FormatError(f"{name} misses part of a profile (KeyError: {exc})") from None
    if (
        blob.dtype != np.uint8
        or offsets.dtype != np.int64
        or offsets.shape != (d + 1,)
        or offsets[0] != 0
        or np.any(np.diff(offsets) <= 0)
        or offsets[-1] != blob.size
    ):
        raise FormatError(f"{name} holds sketches that do not match its {d} dimensions")
    raw = blob.tobytes()
    out = []
    for j in range(d):
        try:
            out.append(cls.deserialize(raw[offsets[j] : offsets[j + 1]]))
        except (ValueError, RuntimeError) as exc:
            raise FormatError(f"{name}: the sketch of dimension {j} is corrupt ({exc})") from None
    return out


def encode(
    state: dict[str, NDArray[Any]],
    sketches: list[Any],
    rows: list[tuple[int, int]],
    sources: list[str],
) -> bytes:
    """Return the ``.lcprof`` bytes of a stream `state` with its per-dimension `sketches`."""
    from .._version import __version__

    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "latentcheck_version": __version__,
        "sketch": {"library": "datasketches", "type": "tdigest_double", "k": int(sketches[0].k)},
        "rows": [list(r) for r in rows],
        "sources": sources,
    }
    arrays: dict[str, NDArray[Any]] = {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    }
    arrays["sketch.bytes"], arrays["sketch.offsets"] = _pack(sketches)
    for key, value in state.items():
        arrays[f"stream.{key}"] = np.asarray(value)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, value, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16  # fixed permissions, as the timestamp
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def decode(data: bytes, name: str = "profile") -> ProfileParts:
    """Return the parts of ``.lcprof`` bytes; FormatError names what is wrong."""
    tdigest()  # a missing library is said as such, not as a bad file
    try:
        return _build(_read_zip(data, name), name)
    except LatentcheckError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{name} is not a valid latentcheck profile: {exc}") from None


def _check_members(zf: zipfile.ZipFile, size: int, name: str) -> None:
    """Raise FormatError if a member is compressed or claims more bytes than the file."""
    for info in zf.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise FormatError(
                f"{name}: member {info.filename!r} is compressed or larger than the "
                "file; profiles are written uncompressed"
            )


def _read_zip(data: bytes, name: str) -> dict[str, NDArray[Any]]:
    """Return the arrays of a ``.lcprof`` zip, refusing compressed or inflated members."""
    if not data.startswith(b"PK"):
        raise FormatError(f"{name} is not a latentcheck profile (not a zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            _check_members(zf, len(data), name)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FormatError(f"{name} is corrupt or truncated ({type(exc).__name__}: {exc})") from None


def _parse_header(raw: NDArray[Any] | None, name: str) -> dict[str, Any]:
    """Return the checked JSON header of a profile (format and version)."""
    if raw is None or raw.dtype != np.uint8:
        raise FormatError(f"{name} has no profile header; is it a latentcheck profile?")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{name} has an unreadable profile header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise FormatError(
            f"{name} is not a latentcheck profile (header format is not {FORMAT_NAME})"
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{name} has profile format_version {version!r}; this latentcheck reads "
            f"{FORMAT_VERSION}: profile the data again with latentcheck profile (or use "
            "the version that wrote it)"
        )
    return header


def read_header(path: Any, name: str) -> dict[str, Any]:
    """Return the checked header of the ``.lcprof`` file at `path`, reading nothing else."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":
                raise FormatError(f"{name} is not a latentcheck profile (not a zip archive)")
            fh.seek(0, 2)
            size = fh.tell()
            with zipfile.ZipFile(fh) as zf:
                _check_members(zf, size, name)
                with zf.open("header.npy") as member:
                    raw = np.lib.format.read_array(member, allow_pickle=False)
    except FormatError:
        raise
    except KeyError:
        raise FormatError(f"{name} has no profile header; is it a latentcheck profile?") from None
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise FormatError(f"{name} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise FormatError(f"Cannot read {name}: {exc.strerror or exc}") from None
    return _parse_header(raw, name)


def _build(arrays: dict[str, NDArray[Any]], name: str) -> ProfileParts:
    """Return the parts of the profile in the arrays of a ``.lcprof`` file, checked."""
    from ..stream import Stream

    header = _parse_header(arrays.get("header"), name)
    state = {k[len("stream.") :]: a for k, a in arrays.items() if k.startswith("stream.")}
    _check_shapes(state, name)
    n = int(state["moments.n"])
    stream = Stream.from_state(state)
    d = stream.n_dims or 0
    try:
        rows = [(int(a), int(b)) for a, b in header["rows"]]
        sources = [str(s) for s in header.get("sources", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{name} misses part of a profile ({type(exc).__name__}: {exc})"
        ) from None
    sketches = _unpack(arrays, "sketch", tdigest(), d, name)
    counts = {int(s.get_total_weight()) for s in sketches}
    spans = [b - a for a, b in rows]
    if counts != {n} or sum(spans) != stream.n_rows or not rows or min(spans) <= 0:
        raise FormatError(
            f"{name} is inconsistent: {n} finite rows in its moments, sketches of "
            f"{sorted(counts)} values, row ranges {rows} for {stream.n_rows} rows"
        )
    if any(s.k != sketches[0].k for s in sketches):
        raise FormatError(f"{name} holds sketches of different sizes k")
    return ProfileParts(stream, sketches, rows, sources)


def _check_shapes(state: dict[str, NDArray[Any]], name: str) -> None:
    """Raise FormatError unless the stream arrays agree on the width and the sample size."""
    try:
        d = int(state["moments.mean"].shape[0])
        n_levels = int(state["config.levels"].shape[0])
        m = int(state["reservoir.keys"].shape[0])
        per_item = int(np.prod(state["config.item_shape"]))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{name} misses part of a profile ({type(exc).__name__}: {exc})"
        ) from None
    want = {
        "reservoir.row_ids": (m,),
        "reservoir.rows": (m, d),
        "prior.upper": (n_levels, d),
        "prior.lower": (n_levels, d),
        "comoments.comoment": (d, d),
        **{
            k: (d,)
            for k in (
                "moments.m2",
                "moments.m3",
                "moments.m4",
                "nonfinite.per_dim",
                "prior.center",
                "prior.scale",
                "extremes.min",
                "extremes.max",
                "comoments.mean",
            )
        },
    }
    bad = [k for k, shape in want.items() if k in state and state[k].shape != shape]
    if bad or d < 1 or per_item < d or per_item % d:
        raise FormatError(
            f"{name} holds arrays of inconsistent shapes ({', '.join(bad) or 'item_shape'}) "
            f"for {d} dimensions; the file is damaged"
        )
