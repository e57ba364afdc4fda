"""The report's ``spatial`` block (conv latents): spatial statistics as typed, frozen objects.

``analysis.spatial.spatial_block`` builds it from ``stats.spatial.correlation.
spatial_statistics`` (lag-1 autocorrelations and the separable AR(1) variance inflation,
after Bartlett 1946 and Bayley & Hammersley 1946), ``stats.spatial.design_effect`` (the
design effect of a cluster sample, Kish 1965) and the univariate tests on rows at
well-separated positions (issue 15). Its JSON form is
:meth:`~latentcheck.model.base.Block.to_dict`, one key per field in field order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import F64, Block

__all__ = ["HeadlineTestsBlock", "HolmTest", "SpatialBlock", "SpatialTestsBlock"]


def _empty() -> F64:
    return np.empty(0)


@dataclass(frozen=True, slots=True)
class HolmTest:
    """One univariate test per channel: statistic, p-value, Holm-adjusted p-value (NaN: not run)."""

    statistic: F64 = field(default_factory=_empty)
    pvalue: F64 = field(default_factory=_empty)
    pvalue_holm: F64 = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, eq=False)
class SpatialTestsBlock(Block):
    """Univariate tests on a set of rows (``spatial.separated_tests``/``all_positions_tests``).

    Attributes
    ----------
    n_rows : int
        Rows the tests ran on.
    n_positions : int or None
        Well-separated positions per item (separated tests only; absent from the JSON
        otherwise).
    note : str
        Which rows, in words.
    tests : dict of str to HolmTest
        Per test name.
    """

    omit_if_none = frozenset({"n_positions"})

    n_rows: int = 0
    n_positions: int | None = None
    note: str = ""
    tests: dict[str, HolmTest] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class HeadlineTestsBlock(Block):
    """Which rows ``dims[*].tests`` ran on (``spatial.headline_tests``).

    Attributes
    ----------
    rows : str
        "separated_positions".
    n_rows : int
    note : str
    """

    rows: str = ""
    n_rows: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class SpatialBlock(Block):
    """Spatial statistics of conv latents (``report.spatial``).

    Per-channel arrays have shape (n_channels,); keys a report saved by an older version
    lacks read back as None and stay absent from its JSON.

    Attributes
    ----------
    spatial_shape : tuple of int
        Grid shape of one sample, e.g. (H, W).
    n_items, n_dropped_items : int
        Samples used and left out.
    autocorrelation, autocorrelation_pearson : ndarray of shape (n_axes, n_channels)
        Lag-1 autocorrelation along each axis about the channel mean, and the Pearson
        correlation of neighbour pairs.
    effective_sample_size : ndarray
        Rows over the design effect of the mean (NaN with one item).
    separation_gap : tuple of int
        Per-axis stride of the well-separated positions.
    separated_positions : tuple of int or None
        Flat indices of the well-separated positions.
    mean_map, std_map : ndarray of shape (n_channels, *spatial_shape)
    outlier_levels : ndarray
    outlier_rate_map : ndarray of shape (n_levels, n_channels, *spatial_shape) or None
    autocorrelation_within : ndarray of shape (n_axes, n_channels) or None
        Lag-1 autocorrelation about the per-position means.
    design_effect_mean, design_effect_var : ndarray or None
        Design effects of the channel mean and variance.
    variance_inflation_ar1 : ndarray or None
        The separable AR(1) model's variance inflation of the mean.
    separated_tests, all_positions_tests : SpatialTestsBlock or None
        The univariate tests on rows at well-separated positions, and at every position.
    headline_tests : HeadlineTestsBlock or None
    """

    omit_if_none = frozenset(
        {
            "separated_positions",
            "autocorrelation_within",
            "design_effect_mean",
            "design_effect_var",
            "variance_inflation_ar1",
            "separated_tests",
            "all_positions_tests",
            "headline_tests",
        }
    )

    spatial_shape: tuple[int, ...] = ()
    n_items: int = 0
    n_dropped_items: int = 0
    autocorrelation: F64 = field(default_factory=_empty)
    autocorrelation_pearson: F64 = field(default_factory=_empty)
    effective_sample_size: F64 = field(default_factory=_empty)
    separation_gap: tuple[int, ...] = ()
    separated_positions: tuple[int, ...] | None = None
    mean_map: F64 = field(default_factory=_empty)
    std_map: F64 = field(default_factory=_empty)
    outlier_levels: F64 = field(default_factory=_empty)
    outlier_rate_map: F64 | None = None
    autocorrelation_within: F64 | None = None
    design_effect_mean: F64 | None = None
    design_effect_var: F64 | None = None
    variance_inflation_ar1: F64 | None = None
    separated_tests: SpatialTestsBlock | None = None
    all_positions_tests: SpatialTestsBlock | None = None
    headline_tests: HeadlineTestsBlock | None = None
