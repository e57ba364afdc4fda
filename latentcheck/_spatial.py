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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .loading import LatentSource
from .report import Normalization, to_jsonable

__all__ = ["check_claim", "spatial_block", "spatial_factory", "widen_normalization"]

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
    from .stats.design_effect import ItemMeansAccumulator
    from .stats.spatial import SpatialAccumulator

    return {
        "spatial": SpatialAccumulator(d, shape, mean=mean, std=std, levels=levels),
        "items": ItemMeansAccumulator(d, rows_per_item, mean),
    }


def _within_autocorrelation(acc: Any) -> F64:
    """Return lag-1 correlations of deviations from the per-position means, per axis.

    The channel-mean autocorrelation also counts a fixed pattern of per-position means as
    correlation; about per-position means only the dependence within a sample remains.
    """
    from .stats.spatial import _pair_slices

    c, shape = acc.n_channels, acc.spatial_shape
    n, p = acc.n, acc.n_positions
    out = np.full((len(shape), c), np.nan)
    var = acc.m2.reshape(c, -1).sum(axis=1) / (n * p) if n else np.full(c, np.nan)
    for a, length in enumerate(shape):
        if length < 2 or n == 0:
            continue
        lo, _ = _pair_slices(1 + a)
        pairs = n * p * (length - 1) / length
        with np.errstate(divide="ignore", invalid="ignore"):
            out[a] = acc.cross[a][lo].reshape(c, -1).sum(axis=1) / pairs / var
    return out


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
) -> tuple[dict[str, Any], F64, F64]:
    """Return the report's ``spatial`` block and the design effects (mean, variance).

    `var` and `fourth` are the channel variance and fourth central moment over all rows.
    """
    from .stats.design_effect import design_effects
    from .stats.normality import univariate_tests
    from .stats.spatial import (
        separation_gap,
        spatial_statistics,
        variance_inflation,
        well_separated_positions,
    )

    acc = accs["spatial"]
    stats = run(spatial_statistics, acc)
    block: dict[str, Any] = stats.to_jsonable()
    rho_within = _within_autocorrelation(acc)
    deff_mean, deff_var = design_effects(accs["items"], var, fourth)
    n_rows = stats.n_items * acc.n_positions
    gap = separation_gap(np.nan_to_num(rho_within, nan=0.0), stats.spatial_shape)
    positions = np.asarray(well_separated_positions(stats.spatial_shape, gap))
    block.pop("variance_inflation")
    block.update(
        autocorrelation_within=rho_within,
        design_effect_mean=deff_mean,
        design_effect_var=deff_var,
        effective_sample_size=n_rows / deff_mean,
        variance_inflation_ar1=variance_inflation(
            stats.spatial_shape, np.nan_to_num(rho_within, nan=0.0)
        ),
        separation_gap=list(gap),
        separated_positions=positions,
    )
    mask = np.isin(row_ids % rows_per_item, positions)
    sep = np.asarray(sample[mask][:test_samples], dtype=np.float64)
    tests = run(univariate_tests, sep, degenerate=degenerate) if sep.shape[0] >= 3 else {}
    block["separated_tests"] = {
        "n_rows": int(sep.shape[0]),
        "n_positions": int(positions.size),
        "note": (
            "the univariate tests again, on sample rows at positions at least "
            f"{', '.join(str(g) for g in gap)} apart, where a separable AR(1) model of the lag-1 "
            "correlation within a sample puts the correlation below 0.05 (or as far apart as "
            "the grid allows); correlation at longer range is not modelled, and positions with "
            "different means are pooled, which alone can make the tests reject"
        ),
        "tests": {
            name: {
                "statistic": t.statistic,
                "pvalue": t.pvalue,
                "pvalue_holm": t.pvalue_holm,
            }
            for name, t in tests.items()
        },
    }
    return to_jsonable(block), deff_mean, deff_var


def widen_normalization(norm: Normalization, deff_mean: F64, deff_var: F64) -> Normalization:
    """Return `norm` with intervals rescaled by the design effects of the conv layout.

    The intervals assumed independent rows; with design effect f the standard error of a
    channel mean is sqrt(f) times that (f may be below 1: then the interval shrinks). The
    std interval uses the design effect of the variance. The global intervals use the mean
    factor over channels.
    """
    import dataclasses

    f_mean = np.sqrt(np.nan_to_num(deff_mean, nan=1.0))
    f_std = np.sqrt(np.nan_to_num(deff_var, nan=1.0))
    mid = norm.per_dim_shift
    half = (norm.per_dim_shift_ci[:, 1] - norm.per_dim_shift_ci[:, 0]) / 2
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
    pooled = 1.0 / norm.scale if norm.scale > 0 else math.nan
    p_lo, p_hi = 1.0 / norm.scale_ci[1], 1.0 / norm.scale_ci[0]
    q_lo = pooled - (pooled - p_lo) * g_std
    q_hi = pooled + (p_hi - pooled) * g_std
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
) -> dict[str, Any]:
    """Return the report's ``summary.normalization_check`` block for a claimed normalisation."""
    from .stats.normcheck import check_normalization

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
    out: dict[str, Any] = to_jsonable(res)
    return out
