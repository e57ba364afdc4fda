"""Typed blocks of the report's ``joint`` part: Mahalanobis and robust (MCD) outliers.

``_joint`` builds them from ``stats.outliers``: squared Mahalanobis distances with the
expected rates of Gnanadesikan & Kettenring (1972, after Wilks 1963), and MinCovDet
(Rousseeuw & Van Driessen 1999) with the expectation of Hardin & Rocke (2005). Their JSON
form is :meth:`~latentcheck.model.base.Block.to_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .base import Block

__all__ = ["MahalanobisBlock", "McdBlock", "TopRow"]


@dataclass(frozen=True, slots=True)
class TopRow:
    """One of the rows with the largest squared distance.

    Attributes
    ----------
    row : int
        Row index in the 2-D view of the input.
    d2 : float
        Squared distance.
    where : str
        The row in the input's own terms (file, sample, position).
    """

    row: int
    d2: float
    where: str


@dataclass(frozen=True, slots=True, eq=False)
class MahalanobisBlock(Block):
    """Squared Mahalanobis distances of all rows (``report.joint.mahalanobis``).

    Attributes
    ----------
    n_rows, n_dims : int
    distance : str
        The distance in words.
    thresholds, outlier_rate, expected_rate, rate_ratio : dict of str to float
        Per χ²_d quantile level ("0.99", "0.999"): the squared-distance threshold, the share
        of rows beyond it, the share expected for Gaussian rows at this size, and their ratio.
    top_rows : tuple of TopRow
    reason : str or None
        Why the distances were not computed.
    """

    n_rows: int = 0
    n_dims: int = 0
    distance: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    outlier_rate: dict[str, float] = field(default_factory=dict)
    expected_rate: dict[str, float] = field(default_factory=dict)
    rate_ratio: dict[str, float] = field(default_factory=dict)
    top_rows: tuple[TopRow, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class McdBlock(Block):
    """Robust (MinCovDet) squared distances on the seeded sample (``report.joint.mcd``).

    Attributes
    ----------
    n_rows, n_dims : int
    support_fraction : float or None
        Share of rows in the MCD support (None, and absent from the JSON, when skipped).
    threshold : float or None
        The χ²_d 0.975 quantile (None, and absent from the JSON, when skipped).
    outlier_rate : float
        Share of the sample beyond the threshold.
    expected_rate : float
        The share expected for Gaussian rows at this size.
    top_rows : tuple of TopRow
    reason : str or None
        Why MCD did not run.
    """

    omit_if_none = frozenset({"support_fraction", "threshold"})

    n_rows: int = 0
    n_dims: int = 0
    support_fraction: float | None = None
    threshold: float | None = None
    outlier_rate: float = math.nan
    expected_rate: float = math.nan
    top_rows: tuple[TopRow, ...] = ()
    reason: str | None = None
