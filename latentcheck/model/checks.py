"""Typed blocks of the report's ``summary``: checks of the sample (and, later, of a claim).

``analysis.finish`` builds :class:`SampleChecksBlock` from
``stats.duplicates.sample_checks`` (bitwise-duplicated rows in the seeded sample, and
dimensions whose values sit on a coarse grid). Its JSON form is
:meth:`~latentcheck.model.base.Block.to_dict`, one key per field in field order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .base import F64, Block

__all__ = ["SampleChecksBlock"]


def _empty() -> F64:
    return np.empty(0)


@dataclass(frozen=True, slots=True, eq=False)
class SampleChecksBlock(Block):
    """Duplicated rows and quantised dimensions in the seeded sample (``summary.sample_checks``).

    Attributes
    ----------
    rows_checked : int
        Sampled rows compared bitwise.
    duplicate_rows : int
        Rows equal to an earlier sampled row.
    duplicate_row_share : float
        duplicate_rows / rows_checked (NaN when no row was checked); a lower bound on the
        input's share unless the sample is every row.
    sample_values : int
        Values per dimension in the seeded sample.
    distinct_values : tuple of int
        Distinct values per dimension in the sample.
    smallest_gap : ndarray of shape (n_dims,)
        Smallest gap between distinct values per dimension (NaN with one distinct value).
    on_grid : tuple of bool
        Per dimension: every gap is a multiple of the smallest.
    quantised_dims : tuple of int
        Dimensions on a grid whose step is at least `quantised_step_sd` std.
    quantised_step_sd : float
    description : str
        The checks in words.
    """

    rows_checked: int = 0
    duplicate_rows: int = 0
    duplicate_row_share: float = math.nan
    sample_values: int = 0
    distinct_values: tuple[int, ...] = ()
    smallest_gap: F64 = field(default_factory=_empty)
    on_grid: tuple[bool, ...] = ()
    quantised_dims: tuple[int, ...] = ()
    quantised_step_sd: float = math.nan
    description: str = ""
