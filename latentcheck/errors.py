"""Exceptions and warnings raised by latentcheck.

The CLI catches :class:`LatentcheckError` (and nothing broader) and turns it into one line
on stderr with exit code 2; warnings are also copied into ``Report.warnings``.
"""

from __future__ import annotations

__all__ = [
    "DegenerateDimensionWarning",
    "FormatError",
    "InputError",
    "LatentcheckError",
    "LatentcheckWarning",
    "OutputError",
    "SampleQualityWarning",
    "SchemaError",
    "SmallSampleWarning",
]


class LatentcheckError(Exception):
    """Base class of every error latentcheck raises on purpose."""


class InputError(LatentcheckError, ValueError):
    """A bad array, shape, dtype or parameter value."""


class FormatError(LatentcheckError):
    """An unreadable file, a missing ``.npz`` key or a pickled array."""


class OutputError(LatentcheckError):
    """The report could not be written (a bad ``-o`` target, a full disk, a closed stdout)."""


class SchemaError(LatentcheckError):
    """A saved report whose ``schema_version`` this version cannot read."""


class LatentcheckWarning(UserWarning):
    """Base class of latentcheck's warnings."""


class SmallSampleWarning(LatentcheckWarning):
    """Too few rows for a statistic; its value is NaN (null in JSON)."""


class DegenerateDimensionWarning(LatentcheckWarning):
    """A dimension with zero or near-zero variance."""


class SampleQualityWarning(LatentcheckWarning):
    """Duplicated rows or quantised dimensions in the sample (issue 15)."""
