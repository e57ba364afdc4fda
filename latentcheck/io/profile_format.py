"""The ``.lcprof`` file format of saved profiles (issue 19): writing, reading, checking.

Format ``format_version`` 1: an uncompressed zip written by ``np.savez`` and read with
``np.load(..., allow_pickle=False)`` (every member's bytes are covered by the zip's CRC-32),
holding

- ``header``: UTF-8 JSON as uint8: ``format`` ("latentcheck-profile"),
  ``format_version``, ``latentcheck_version``, ``sketch`` (``library``, ``type``, ``k``),
  ``rows`` (the global row ranges ``[start, stop)`` the profile holds), ``sources``;
- ``stream.<name>``: the arrays of :meth:`latentcheck.stream.Stream.state`;
- ``sketch.bytes`` (uint8) and ``sketch.offsets`` (int64, n_dims + 1): the
  ``serialize()`` bytes of each dimension's DataSketches ``kll_doubles_sketch``,
  concatenated;
- ``tail.low.*`` and ``tail.high.*``, laid out the same: each dimension's two
  ``req_floats_sketch`` (REQ, relative-error quantiles), accurate at low ranks and at high
  ranks, for the outlier rates in the two tails.

Readers refuse other versions, compressed members, members larger than the file, arrays
that disagree on the width, and sketches that do not count the moments' rows: one
:class:`~latentcheck.errors.FormatError` line each.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, InputError, LatentcheckError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MISSING",
    "ProfileParts",
    "decode",
    "encode",
    "kll",
    "rank_error",
    "req",
]

#: Version of the ``.lcprof`` layout; readers refuse others.
FORMAT_VERSION = 1
FORMAT_NAME = "latentcheck-profile"
MISSING = (
    "Profiles need the datasketches package (KLL quantile sketches); "
    "install it with: pip install 'latentcheck[profile]'"
)


def kll() -> Any:
    """Return datasketches' ``kll_doubles_sketch`` class, or raise a one-line error."""
    try:
        from datasketches import kll_doubles_sketch  # type: ignore[import-untyped]
    except ImportError:
        raise InputError(MISSING) from None
    return kll_doubles_sketch


def rank_error(k: int, *, two_sided: bool = True) -> float:
    """Return the KLL normalised rank error ε(k), 99 % confidence (DataSketches' bound)."""
    return float(kll().get_normalized_rank_error(int(k), bool(two_sided)))


def req() -> Any:
    """Return datasketches' ``req_floats_sketch`` class, or raise a one-line error."""
    kll()
    from datasketches import req_floats_sketch

    return req_floats_sketch


@dataclass(frozen=True)
class ProfileParts:
    """What a ``.lcprof`` file holds: stream, KLL and REQ sketches, row ranges, sources."""

    stream: Any
    sketches: list[Any]
    rows: list[tuple[int, int]]
    sources: list[str]
    low: list[Any]
    high: list[Any]


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
    low: list[Any],
    high: list[Any],
) -> bytes:
    """Return the ``.lcprof`` bytes of a stream `state` with its per-dimension `sketches`."""
    from .._version import __version__

    k = int(sketches[0].k)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "latentcheck_version": __version__,
        "sketch": {"library": "datasketches", "type": "kll_doubles_sketch", "k": k},
        "tail_sketch": {"type": "req_floats_sketch", "k": int(low[0].k)},
        "rows": [list(r) for r in rows],
        "sources": sources,
    }
    arrays: dict[str, NDArray[Any]] = {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    }
    for prefix, family in (("sketch", sketches), ("tail.low", low), ("tail.high", high)):
        arrays[f"{prefix}.bytes"], arrays[f"{prefix}.offsets"] = _pack(family)
    for key, value in state.items():
        arrays[f"stream.{key}"] = np.asarray(value)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def decode(data: bytes, name: str = "profile") -> ProfileParts:
    """Return the parts of ``.lcprof`` bytes; FormatError names what is wrong."""
    kll()  # a missing library is said as such, not as a bad file
    try:
        return _build(_read_zip(data, name), name)
    except LatentcheckError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{name} is not a valid latentcheck profile: {exc}") from None


def _read_zip(data: bytes, name: str) -> dict[str, NDArray[Any]]:
    """Return the arrays of a ``.lcprof`` zip, refusing compressed or inflated members."""
    if not data.startswith(b"PK"):
        raise FormatError(f"{name} is not a latentcheck profile (not a zip archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                    raise FormatError(
                        f"{name}: member {info.filename!r} is compressed or larger than the "
                        "file; profiles are written uncompressed"
                    )
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FormatError(f"{name} is corrupt or truncated ({type(exc).__name__}: {exc})") from None


def _build(arrays: dict[str, NDArray[Any]], name: str) -> ProfileParts:
    """Return the parts of the profile in the arrays of a ``.lcprof`` file, checked."""
    from ..stream import Stream

    if "header" not in arrays or arrays["header"].dtype != np.uint8:
        raise FormatError(f"{name} has no profile header; is it a latentcheck profile?")
    try:
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
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
            f"{FORMAT_VERSION} (re-run latentcheck profile, or use the version that wrote it)"
        )
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
    sketches = _unpack(arrays, "sketch", kll(), d, name)
    low = _unpack(arrays, "tail.low", req(), d, name)
    high = _unpack(arrays, "tail.high", req(), d, name)
    if any(s.is_hra() for s in low) or not all(s.is_hra() for s in high):
        raise FormatError(f"{name} holds tail sketches of the wrong kind")
    counts = {int(s.n) for s in [*sketches, *low, *high]}
    spans = [b - a for a, b in rows]
    if counts != {n} or sum(spans) != stream.n_rows or not rows or min(spans) <= 0:
        raise FormatError(
            f"{name} is inconsistent: {n} finite rows in its moments, sketches of "
            f"{sorted(counts)} values, row ranges {rows} for {stream.n_rows} rows"
        )
    if any(s.k != sketches[0].k for s in sketches) or len({s.k for s in low + high}) != 1:
        raise FormatError(f"{name} holds sketches of different sizes k")
    return ProfileParts(stream, sketches, rows, sources, low, high)


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
