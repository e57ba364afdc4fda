"""Conv latents and claimed normalisations: glue between the analysis and the statistics.

For conv latents the second pass also streams a spatial accumulator (lag-1 spatial
autocorrelation, per-position maps); its effective sample size widens the normalisation
confidence intervals, and the univariate tests are repeated on rows at well-separated
positions. A claimed normalisation (``--assume-scale/--assume-shift``) is checked against
the data's moments. The statistics live in ``stats.spatial`` and ``stats.normcheck``.
"""

from __future__ import annotations

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
) -> Callable[[], Any] | None:
    """Return a maker of second-pass spatial accumulators for conv sources, else None."""
    shape = spatial_shape(source)
    if shape is None:
        return None
    from .stats.spatial import SpatialAccumulator

    keep = tuple(levels[:2])
    return lambda: SpatialAccumulator(source.n_dims, shape, mean=mean, std=std, levels=keep)


def spatial_block(
    acc: Any,
    *,
    sample: NDArray[Any],
    row_ids: NDArray[np.int64],
    rows_per_item: int,
    test_samples: int,
    degenerate: NDArray[np.bool_],
    run: Callable[..., Any],
) -> tuple[dict[str, Any], F64, F64]:
    """Return the report's ``spatial`` block and the per-channel variance inflation factors.

    The second factor is for the standard deviation: for a Gaussian field the squares of
    neighbours correlate as rho², so its inflation uses rho² in place of rho.
    """
    from .stats.normality import univariate_tests
    from .stats.spatial import spatial_statistics, variance_inflation

    stats = run(spatial_statistics, acc)
    block: dict[str, Any] = stats.to_jsonable()
    rho = np.nan_to_num(stats.autocorrelation, nan=0.0)
    vif_mean = np.asarray(stats.variance_inflation, dtype=np.float64)
    vif_std = np.asarray(variance_inflation(stats.spatial_shape, rho**2), dtype=np.float64)
    positions = np.asarray(stats.separated_positions)
    mask = np.isin(row_ids % rows_per_item, positions)
    sep = np.asarray(sample[mask][:test_samples], dtype=np.float64)
    tests = run(univariate_tests, sep, degenerate=degenerate) if sep.shape[0] >= 3 else {}
    block["separated_tests"] = {
        "n_rows": int(sep.shape[0]),
        "n_positions": int(positions.size),
        "note": (
            "the univariate tests again, on sample rows at positions at least "
            f"{', '.join(str(g) for g in stats.separation_gap)} apart (lag correlation below "
            "0.05), so that rows of one sample are close to independent"
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
    return to_jsonable(block), vif_mean, vif_std


def widen_normalization(norm: Normalization, vif_mean: F64, vif_std: F64) -> Normalization:
    """Return `norm` with per-dimension intervals widened by the spatial variance inflation.

    The intervals assumed independent rows; with a variance inflation factor f the standard
    errors grow by sqrt(f). The global intervals grow by the mean factor over channels.
    """
    import dataclasses

    f_mean = np.sqrt(np.maximum(vif_mean, 1.0))
    f_std = np.sqrt(np.maximum(vif_std, 1.0))
    mid = norm.per_dim_shift
    half = (norm.per_dim_shift_ci[:, 1] - norm.per_dim_shift_ci[:, 0]) / 2
    shift_ci = np.stack([mid - half * f_mean, mid + half * f_mean], 1)
    std = np.where(norm.per_dim_scale > 0, 1.0 / norm.per_dim_scale, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        std_lo = 1.0 / norm.per_dim_scale_ci[:, 1]
        std_hi = 1.0 / norm.per_dim_scale_ci[:, 0]
        lo = std - (std - std_lo) * f_std
        hi = std + (std_hi - std) * f_std
        scale_ci = np.stack([1.0 / hi, np.where(lo > 0, 1.0 / lo, np.inf)], 1)
    g_mean = float(np.sqrt(np.mean(np.maximum(vif_mean, 1.0))))
    g_std = float(np.sqrt(np.mean(np.maximum(vif_std, 1.0))))
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
