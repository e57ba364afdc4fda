"""Conv latents and claimed normalisations: glue between the analysis and the statistics.

For conv latents the second pass also streams a spatial accumulator (lag-1 spatial
autocorrelation, per-position maps) and the per-sample channel means, whose exact design
effect rescales the normalisation confidence intervals; the univariate tests are repeated
on rows at well-separated positions. A claimed normalisation (``--assume-scale`` and
``--assume-shift``) is checked against the data's moments. The statistics live in
``stats.spatial``, ``stats.design_effect`` and ``stats.normcheck``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..io.latents import LatentSource
from ..model.checks import NormalizationCheckBlock
from ..model.report import Normalization, to_jsonable

__all__ = [
    "IndependentRows",
    "all_positions_block",
    "check_claim",
    "headline_note",
    "independent_sample",
    "spatial_block",
    "spatial_factory",
    "widen_normalization",
]

F64 = NDArray[np.float64]
Z975 = 1.959963984540054


def spatial_shape(source: LatentSource) -> tuple[int, ...] | None:
    """Return the grid shape of one sample of a conv source, or None for row data."""
    if source.channel_axis is None or source.rows_per_item <= 1:
        return None
    return tuple(s for i, s in enumerate(source.item_shape, start=1) if i != source.channel_axis)


def spatial_factory(
    source: LatentSource, mean: F64, std: F64, levels: Sequence[float]
) -> Callable[[], dict[str, Any]] | None:
    """Return a maker of second-pass accumulators for conv sources (None for row data).

    Two accumulators: the spatial maps and cross-moments, and the per-sample channel means
    from which the exact design effects come.
    """
    shape = spatial_shape(source)
    if shape is None:
        return None
    return functools.partial(
        _spatial_accumulators,
        source.n_dims,
        shape,
        mean,
        std,
        tuple(levels[:2]),
        source.rows_per_item,
    )


def _spatial_accumulators(
    d: int,
    shape: tuple[int, ...],
    mean: F64,
    std: F64,
    levels: tuple[float, ...],
    rows_per_item: int,
) -> dict[str, Any]:
    """Return empty spatial accumulators (module level: worker processes unpickle it)."""
    from ..stats.spatial.accumulator import SpatialAccumulator
    from ..stats.spatial.design_effect import ItemMeansAccumulator

    return {
        "spatial": SpatialAccumulator(d, shape, mean=mean, std=std, levels=levels),
        "items": ItemMeansAccumulator(d, rows_per_item, mean),
    }


def _within_autocorrelation(acc: Any) -> F64:
    """Return lag-1 correlations of deviations from the per-position means, per axis.

    The channel-mean autocorrelation also counts a fixed pattern of per-position means as
    correlation; about per-position means only the dependence within a sample remains.
    """
    from ..stats.spatial.accumulator import pair_slices

    c, shape = acc.n_channels, acc.spatial_shape
    n, p = acc.n, acc.n_positions
    out = np.full((len(shape), c), np.nan)
    var = acc.m2.reshape(c, -1).sum(axis=1) / (n * p) if n else np.full(c, np.nan)
    for a, length in enumerate(shape):
        if length < 2 or n == 0:
            continue
        lo, _ = pair_slices(1 + a)
        pairs = n * p * (length - 1) / length
        with np.errstate(divide="ignore", invalid="ignore"):
            out[a] = acc.cross[a][lo].reshape(c, -1).sum(axis=1) / pairs / var
    return out


@dataclass(frozen=True, slots=True)
class IndependentRows:
    """Sample rows of a conv source that are (nearly) independent across the sample.

    Attributes
    ----------
    rows : ndarray of shape (n_rows, n_dims)
        The seeded sample's rows at well-separated positions, in key order (a uniform
        random order), so any prefix is a uniform sample of them.
    n_positions : int
        Positions kept per item.
    gap : tuple of int
        Per-axis separation of the kept positions.
    note : str
        Which rows these are and why, for the report.
    """

    rows: NDArray[Any]
    n_positions: int
    gap: tuple[int, ...]
    note: str

    def where(self, m: int) -> str:
        """Return the method suffix of a test run on the first `m` of these rows."""
        if not any(self.gap):
            return f"on {m} sample rows, one per item: conv positions of one item are correlated"
        return (
            f"on {m} sample rows at {self.n_positions} well-separated position(s) per item "
            f"(gap {'x'.join(str(g) for g in self.gap)}), nearly independent: conv positions "
            "of one item are correlated"
        )


def _tests_block(tests: dict[str, Any], n_rows: int, note: str, **extra: Any) -> dict[str, Any]:
    """Return a JSON-ready block of univariate tests (statistic, p-values per test)."""
    return {
        "n_rows": int(n_rows),
        **extra,
        "note": note,
        "tests": {
            name: {
                "statistic": t.statistic,
                "pvalue": t.pvalue,
                "pvalue_holm": t.pvalue_holm,
            }
            for name, t in tests.items()
        },
    }


def spatial_block(
    accs: dict[str, Any],
    *,
    var: F64,
    fourth: F64,
    sample: NDArray[Any],
    row_ids: NDArray[np.int64],
    rows_per_item: int,
    test_samples: int,
    degenerate: NDArray[np.bool_],
    run: Callable[..., Any],
) -> tuple[dict[str, Any], F64, F64, IndependentRows, dict[str, Any]]:
    """Return the ``spatial`` block, the design effects, the independent rows and their tests.

    `var` and `fourth` are the channel variance and fourth central moment over all rows.
    The univariate tests on the first `test_samples` independent rows are returned as
    well (NaN with the reason where too few rows): they are the report's headline tests for
    a conv source (issue 15).
    """
    from ..stats.normality import univariate_tests
    from ..stats.spatial.correlation import (
        separation_gap,
        spatial_statistics,
        variance_inflation,
        well_separated_positions,
    )
    from ..stats.spatial.design_effect import design_effects

    acc = accs["spatial"]
    stats = run(spatial_statistics, acc)
    block: dict[str, Any] = stats.to_jsonable()
    rho_within = _within_autocorrelation(acc)
    deff_mean, deff_var = design_effects(accs["items"], var, fourth)
    n_rows = stats.n_items * acc.n_positions
    # with one item (or a channel constant within items) the correlation about the
    # per-position means is undefined: the one about the channel mean stands in for it,
    # rather than 0, which would call every position independent
    rho_gap = np.where(np.isfinite(rho_within), rho_within, stats.autocorrelation)
    gap = separation_gap(np.nan_to_num(rho_gap, nan=0.0), stats.spatial_shape)
    positions = np.asarray(well_separated_positions(stats.spatial_shape, gap))
    block.pop("variance_inflation")
    block.update(
        autocorrelation_within=rho_within,
        design_effect_mean=deff_mean,
        design_effect_var=deff_var,
        # one item: no spread of item means, so no design effect (NaN, not 1/0)
        effective_sample_size=n_rows / np.where(deff_mean > 0, deff_mean, np.nan),
        variance_inflation_ar1=variance_inflation(
            stats.spatial_shape, np.nan_to_num(rho_within, nan=0.0)
        ),
        separation_gap=list(gap),
        separated_positions=positions,
    )
    mask = np.isin(row_ids % rows_per_item, positions)
    indep = IndependentRows(
        rows=sample[mask],
        n_positions=int(positions.size),
        gap=tuple(int(g) for g in gap),
        note=(
            "sample rows at positions at least "
            f"{', '.join(str(g) for g in gap)} apart, where a separable AR(1) model of the "
            "lag-1 correlation within a sample puts the correlation below 0.05 (or as far "
            "apart as the grid allows: one position per item); items are independent, so "
            "these rows are nearly independent and the tests on them hold their level, "
            "where the rows at all positions (correlated within an item) make them reject "
            "exact N(0, 1) fields. Correlation at longer range is not modelled, and "
            "positions with different means are pooled, which alone can make the tests reject"
        ),
    )
    sep = np.asarray(indep.rows[:test_samples], dtype=np.float64)
    # run even on fewer rows than a test needs: it then reports NaN with the reason, which
    # is what the headline should say rather than the p-values of correlated rows
    tests = run(univariate_tests, sep, degenerate=degenerate)
    block["separated_tests"] = _tests_block(
        tests,
        sep.shape[0],
        "the univariate tests on " + indep.note,
        n_positions=int(positions.size),
    )
    return to_jsonable(block), deff_mean, deff_var, indep, tests


def one_row_per_item(
    sample: NDArray[Any], row_ids: NDArray[np.int64], rows_per_item: int, spatial_ndim: int
) -> IndependentRows:
    """Return the first sampled row of each item: independent rows without a second pass.

    A single pass (``lc.Stream``) has no spatial autocorrelation to choose separated
    positions from; items are independent, so one row per item is, at any correlation.
    The sample is in key order, so the first row of an item is a uniform random position.
    """
    items = np.asarray(row_ids, dtype=np.int64) // max(int(rows_per_item), 1)
    _, first = np.unique(items, return_index=True)
    return IndependentRows(
        rows=sample[np.sort(first)],
        n_positions=1,
        gap=(0,) * spatial_ndim,
        note=(
            "the first sample row of each item (one position per item): a single pass "
            "measures no spatial autocorrelation to separate positions by, and rows of "
            "different items are independent"
        ),
    )


def independent_sample(
    report: Any, sample: NDArray[Any], row_ids: NDArray[np.int64]
) -> NDArray[Any] | None:
    """Return the sample rows at the report's well-separated positions (None for row data).

    Two-sample tests on conv latents need rows independent within each input: the rows
    at all positions of one item are correlated, and KS and the energy test on them
    flagged two independent draws of the same smoothed fields as changed (issue 15).
    """
    sp = getattr(report, "spatial", None)
    if sp is None or sp.separated_positions is None:
        return None
    per_item = math.prod(int(s) for s in sp.spatial_shape)
    positions = np.asarray(sp.separated_positions, dtype=np.int64)
    mask = np.isin(np.asarray(row_ids, dtype=np.int64) % per_item, positions)
    return sample[mask]


def all_positions_block(tests: dict[str, Any], n_rows: int) -> dict[str, Any]:
    """Return the ``spatial.all_positions_tests`` block: the tests on rows at every position."""
    out: dict[str, Any] = to_jsonable(
        _tests_block(
            tests,
            n_rows,
            "the univariate tests on the first sample rows at every position, as for row "
            "data; positions of one item are correlated, so these p-values are too small "
            "(exact N(0, 1) fields are rejected) and the headline dims tests use the "
            "separated rows instead",
        )
    )
    return out


def headline_note(independent: IndependentRows, test_samples: int) -> dict[str, Any]:
    """Return the ``spatial.headline_tests`` block: which rows ``dims[*].tests`` ran on."""
    n_rows = int(min(test_samples, independent.rows.shape[0]))
    note = (
        "dims[*].tests, the Holm family that summary.dims_rejected, the verdict and "
        "--fail-on read, ran on the rows of spatial.separated_tests (the same numbers): "
        "the first sample rows at well-separated positions, nearly independent, so the "
        "family holds its level on conv latents; the tests on rows at all positions are in "
        "spatial.all_positions_tests"
    )
    if n_rows < 3:
        note += (
            f"; with {n_rows} such rows the tests could not run (more items, or a weaker "
            "spatial correlation, give more)"
        )
    return {"rows": "separated_positions", "n_rows": n_rows, "note": note}


def widen_normalization(
    norm: Normalization, deff_mean: F64, deff_var: F64, *, items: Any = None
) -> Normalization:
    """Return `norm` with intervals rescaled by the design effects of the conv layout.

    The intervals assumed independent rows; with design effect f the standard error of a
    channel mean is sqrt(f) times that (f may be below 1: then the interval shrinks). The
    std interval uses the design effect of the variance. The global intervals use the mean
    factor over channels.

    With `items` (the ItemMeansAccumulator of the samples' channel means) the shift
    intervals, per channel and global, are instead Student t(N − 1) intervals over the N
    samples' means with the ddof = 1 standard deviation (see
    :func:`~latentcheck.stats.spatial.design_effect.item_mean_intervals`): the z interval with the
    ddof = 0 design effect covered 0.931 at 20 items (issue 15); and the global scale's
    interval is a t interval for the pooled variance over the samples' mean squares
    (:func:`~latentcheck.stats.spatial.design_effect.item_pooled_variance_half`).
    """
    import dataclasses

    from ..stats.spatial.design_effect import item_mean_intervals, item_pooled_variance_half

    t_half = item_mean_intervals(items) if items is not None else None

    f_mean = np.sqrt(np.nan_to_num(deff_mean, nan=1.0))
    f_std = np.sqrt(np.nan_to_num(deff_var, nan=1.0))
    mid = norm.per_dim_shift
    half = (norm.per_dim_shift_ci[:, 1] - norm.per_dim_shift_ci[:, 0]) / 2
    if t_half is not None:
        half, f_mean = t_half[0], np.ones_like(f_mean)
    shift_ci = np.stack([mid - half * f_mean, mid + half * f_mean], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = 1.0 / norm.per_dim_scale
        std_lo = 1.0 / norm.per_dim_scale_ci[:, 1]
        std_hi = 1.0 / norm.per_dim_scale_ci[:, 0]
        lo = std - (std - std_lo) * f_std
        hi = std + (std_hi - std) * f_std
        scale_ci = np.stack([1.0 / hi, np.where(lo > 0, 1.0 / lo, np.inf)], 1)
    g_mean = float(np.sqrt(np.mean(np.nan_to_num(deff_mean, nan=1.0))))
    g_std = float(np.sqrt(np.mean(np.nan_to_num(deff_var, nan=1.0))))
    s_half = (norm.shift_ci[1] - norm.shift_ci[0]) / 2
    if t_half is not None:
        s_half, g_mean = t_half[1], 1.0
    pooled = 1.0 / norm.scale if norm.scale > 0 else math.nan
    p_lo, p_hi = 1.0 / norm.scale_ci[1], 1.0 / norm.scale_ci[0]
    q_lo = pooled - (pooled - p_lo) * g_std
    q_hi = pooled + (p_hi - pooled) * g_std
    v_half = item_pooled_variance_half(items) if items is not None else None
    if v_half is not None and math.isfinite(pooled):
        # a t interval for the pooled variance over the samples' own mean squares, mapped
        # to the std by square roots of its end points
        q_lo = math.sqrt(max(pooled * pooled - v_half, 0.0))
        q_hi = math.sqrt(pooled * pooled + v_half)
    return dataclasses.replace(
        norm,
        shift_ci=(norm.shift - s_half * g_mean, norm.shift + s_half * g_mean),
        scale_ci=(1.0 / q_hi, 1.0 / q_lo if q_lo > 0 else math.inf),
        per_dim_shift_ci=shift_ci,
        per_dim_scale_ci=scale_ci,
    )


def check_claim(
    norm: Normalization,
    *,
    assume_scale: float,
    assume_shift: float,
    degenerate: NDArray[np.bool_],
    run: Callable[..., Any],
) -> NormalizationCheckBlock:
    """Return the report's ``summary.normalization_check`` block for a claimed normalisation."""
    from ..stats.normalization import check_normalization

    ok = ~degenerate
    with np.errstate(divide="ignore"):
        per_std = 1.0 / norm.per_dim_scale
    res = run(
        check_normalization,
        norm.n_rows,
        norm.shift,
        1.0 / norm.scale,
        assume_scale=assume_scale,
        assume_shift=assume_shift,
        per_dim_mean=norm.per_dim_shift[ok],
        per_dim_std=per_std[ok],
    )
    # through the JSON form, so that non-finite figures are None as in a saved report
    out: NormalizationCheckBlock = NormalizationCheckBlock.from_dict(to_jsonable(res))
    return out
