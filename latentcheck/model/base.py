"""Low-level result types and the JSON conversion, shared by the statistics and the report.

Statistics modules return these (a test's ``TestResult``, a verdict line's ``Finding``, the
normalisation constants); ``report`` builds on them. This module imports no module of
latentcheck but ``errors``, so importing it never imports the report or a renderer.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import os
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError, SchemaError

F64 = NDArray[np.float64]

__all__ = [
    "F64",
    "Block",
    "Finding",
    "Normalization",
    "TestResult",
    "clean_float",
    "created_at",
    "from_jsonable",
    "gaussian_tail_rates",
    "level_key",
    "to_jsonable",
]


def created_at() -> str:
    """Return the report's ``created_at``: now, in UTC, to the second (ISO 8601).

    Where ``SOURCE_DATE_EPOCH`` is set (the reproducible-builds.org convention: an integer
    number of seconds since 1970-01-01 UTC), that time instead, so that two runs on the
    same data and seed write byte-identical reports. A malformed value is refused
    (:class:`~latentcheck.errors.InputError`), as the convention asks, rather than ignored.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    else:
        try:
            seconds = int(raw.strip())
            when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise InputError(
                f"SOURCE_DATE_EPOCH must be an integer number of seconds since 1970-01-01 UTC, "
                f"got {raw!r}"
            ) from None
    return when.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class TestResult:
    """Outcome of one hypothesis test.

    Attributes
    ----------
    statistic : float
        The test statistic, as the reference implementation defines it. NaN when the test
        was skipped.
    pvalue : float
        The p-value under the test's null hypothesis. NaN when the test was skipped.
    df : float or None
        Degrees of freedom of the reference distribution, where there is one.
    effect_size : float or None
        A scale-free size of the departure from the null (defined per test).
    method : str or None
        How the p-value was obtained, in words (e.g. "chi2 approximation").
    reason : str or None
        Why the test was skipped (statistic and p-value are NaN then).
    """

    __test__ = False  # not a pytest test class

    statistic: float
    pvalue: float
    df: float | None = None
    effect_size: float | None = None
    method: str | None = None
    reason: str | None = None

    @classmethod
    def skipped(cls, reason: str) -> TestResult:
        """Return a result that records why a test did not run."""
        return cls(statistic=math.nan, pvalue=math.nan, reason=reason)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the verdict.

    Attributes
    ----------
    aspect : str
        "input", "dimensions", "scale", "outliers", "gaussianity", "rate" or
        "normalization" ("joint" in comparisons).
    status : str
        "ok", "note" or "warn".
    text : str
        The finding in words, with its numbers; it names the dimensions in `dims`.
    code : str
        Stable machine name of the rule that produced it (``dead_dims``, ``scale_spread``,
        ``heavy_tails``, ``non_gaussian``, ...; the README lists them). Empty in reports
        saved before codes existed.
    dims : tuple of int
        Indices of the dimensions the finding is about; empty when it is global.
    """

    aspect: str
    status: str
    text: str
    code: str = ""
    dims: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Normalization:
    """Latent normalisation constants, from all rows, with 95% confidence intervals.

    Attributes
    ----------
    shift : float
        Mean over all values of all dimensions: the ``shift_factor`` of SD3/FLUX,
        used as ``(z − shift) * scale``.
    scale : float
        1 / (standard deviation over all values about `shift`): ``scaling_factor`` of
        SD3/FLUX, and of Stable Diffusion (``z * scaling_factor``), which uses no shift.
    scale_rms : float
        1 / sqrt(mean of z²): the factor that gives unit second moment *without* a shift.
    per_dim_shift, per_dim_scale : ndarray of shape (n_dims,)
        Per-dimension mean and 1/std (``(z − per_dim_shift) * per_dim_scale``); diffusers'
        ``latents_mean``/``latents_std`` and EDM2's ``raw_mean``/``raw_std`` are
        ``per_dim_shift`` and ``1 / per_dim_scale``.
    shift_ci, scale_ci : tuple of float
        95% confidence intervals (normal approximation; see Notes of ``normalization``).
    per_dim_shift_ci, per_dim_scale_ci : ndarray of shape (n_dims, 2)
    n_rows : int
        Rows the constants come from.
    """

    shift: float
    scale: float
    scale_rms: float
    per_dim_shift: F64
    per_dim_scale: F64
    shift_ci: tuple[float, float]
    scale_ci: tuple[float, float]
    per_dim_shift_ci: F64
    per_dim_scale_ci: F64
    n_rows: int


def clean_float(x: float) -> float | None:
    """Return x, or None for NaN and ±inf."""
    return x if math.isfinite(x) else None


def to_jsonable(value: Any) -> Any:
    """Return `value` as JSON-ready Python values (dataclasses as dicts, NaN as None)."""
    if isinstance(value, Block):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return clean_float(float(value))
    return value


def gaussian_tail_rates(levels: Sequence[float]) -> F64:
    """Return 2Φ(−k) = erfc(k/√2), the Gaussian share beyond k std, for each level k.

    The complementary error function as DLMF 7.2.2 defines it, with Φ(x) = erfc(−x/√2)/2
    (DLMF 7.17.1); ``math.erfc`` per level. ``stats.outliers.gaussian_tail`` computes the
    same with scipy's erfc, which differs in the last ulp for most k: the report keeps
    ``math.erfc`` so that its JSON stays as it was.
    """
    return np.array([math.erfc(float(k) / math.sqrt(2.0)) for k in levels], dtype=np.float64)


def level_key(level: float) -> str:
    """Return the JSON key of a level: "3" for 3.0, "0.001" for 0.001."""
    return f"{level:g}" if level != int(level) else str(int(level))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """Return the resolved type hints of a dataclass (resolved once per class)."""
    return typing.get_type_hints(cls)


def from_jsonable(cls: Any, data: Any) -> Any:
    """Build dataclass `cls` from JSON values by its type hints (nested dataclasses, arrays).

    The inverse of :func:`to_jsonable`: None becomes NaN where a float is expected, lists
    become arrays where an ndarray is; a key missing from `data` takes the field's default.

    Raises
    ------
    SchemaError
        If `data` lacks a field that has no default.
    """
    hints = _type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise SchemaError(f"Saved report lacks the key {cls.__name__}.{f.name}")
        kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    """Convert a JSON value to the Python value a type hint describes."""
    if value is None:
        if hint is float:
            return math.nan
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value) if len(non_none) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Block):
        return hint.from_dict(value)
    if dataclasses.is_dataclass(hint):
        return from_jsonable(hint, value)
    if hint is float:
        return float(value)
    if hint is int:
        return int(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=False))
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if origin is np.ndarray or hint is F64 or "ndarray" in str(hint):
        arr = np.array(value if not _has_none(value) else _none_to_nan(value), dtype=np.float64)
        return arr
    return value


def _has_none(value: Any) -> bool:
    """Return True if a nested list holds None."""
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return value is None


def _none_to_nan(value: Any) -> Any:
    """Return a nested list with None replaced by NaN."""
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return math.nan if value is None else value


class Block(Mapping[str, Any]):
    """Base of a report block: a frozen dataclass with one JSON boundary.

    Renderers and the verdict read a block's attributes. :meth:`to_dict` is the block's JSON
    form (field order is key order, arrays as lists, NaN as None; a field named in
    ``omit_if_none`` is left out while it is None) and :meth:`from_dict` reads it back. For
    code written when the block was a dict, a block also reads as a read-only mapping of its
    JSON values (``block["rate_nats"]``, ``block.get(...)``): ``dict(block) == block.to_dict()``.
    """

    __slots__ = ()

    #: fields left out of the JSON form while None (keys that only some variants have)
    omit_if_none: ClassVar[frozenset[str]] = frozenset()

    def _present(self) -> list[str]:
        """Return the names of the fields the JSON form holds, in order."""
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        return [n for n in names if not (n in self.omit_if_none and getattr(self, n) is None)]

    def to_dict(self) -> dict[str, Any]:
        """Return the block as JSON-ready Python values (NaN and ±inf become None)."""
        return {name: to_jsonable(getattr(self, name)) for name in self._present()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild the block from :meth:`to_dict` output (missing keys take defaults)."""
        obj = from_jsonable(cls, data)
        # an optional key present with null was a NaN, not an absent figure
        nan = {n: math.nan for n in cls.omit_if_none if n in data and data[n] is None}
        return dataclasses.replace(obj, **nan) if nan else obj

    def __getitem__(self, key: str) -> Any:
        if key not in self._present():
            raise KeyError(key)
        return to_jsonable(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def __len__(self) -> int:
        return len(self._present())
