"""The report's per-dimension statistics, stored by column, and their JSON records.

:class:`Dims` keeps one array per figure (fast to compute on and to render); the JSON holds
one object per dimension. :func:`dims_to_records` and :func:`records_to_dims` are the two
directions of that boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .base import F64, clean_float, gaussian_tail_rates, level_key

__all__ = ["HISTOGRAM_EDGES", "Dims", "UnivariateTest", "dims_to_records", "records_to_dims"]

#: Bin edges of ``dims[i].histogram``, in standard deviations from the dimension's mean
#: (0.25 wide from -5 to 5); the histogram adds an underflow and an overflow bin.
HISTOGRAM_EDGES: tuple[float, ...] = tuple(-5.0 + 0.25 * i for i in range(41))


@dataclass(frozen=True, slots=True)
class UnivariateTest:
    """Per-dimension result arrays of one univariate test (see ``stats.normality``)."""

    statistic: F64
    pvalue: F64
    pvalue_holm: F64
    reason: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Dims:
    """Per-dimension statistics, stored by column; JSON holds one object per dimension.

    Attributes
    ----------
    index : ndarray of int
    count : ndarray of int
        Rows used per dimension.
    mean, std, min, max, skewness, excess_kurtosis : ndarray of shape (n_dims,)
        Over all rows used; std with ddof=0; skewness g1 and excess kurtosis g2 are the
        biased moment ratios (scipy.stats.skew / kurtosis defaults).
    quantiles : ndarray of shape (n_levels, n_dims)
        numpy "linear" quantiles at ``Settings.quantile_levels``.
    kl_gauss, negentropy, kl_marginal : ndarray of shape (n_dims,)
        Moment-matched KL to N(0, 1), negentropy, and their sum (nats).
    outlier_rate, prior_outlier_rate : ndarray of shape (n_levels, n_dims)
        Fraction of rows beyond mean ± k·std, and fraction with |z| > k, per level of
        ``Settings.sigma_levels``. The Gaussian expectation 2Φ(−k) is
        ``Settings.expected_outlier_rates`` and the JSON's ``outlier_ratio`` is
        ``Report.outlier_ratio(level)``; neither is stored here.
    tests : dict of str to UnivariateTest
    degenerate : ndarray of bool
        Zero or near-zero variance (left out of joint statistics and tests).
    histogram : ndarray of int of shape (n_dims, n_bins + 2) or None
        Counts of the seeded sample's standardised values (z − mean)/std in the bins of
        ``HISTOGRAM_EDGES``, with one underflow and one overflow bin at the ends.
    mad : ndarray of shape (n_dims,) or None
        Median absolute deviation of the seeded sample over Φ⁻¹(3/4), a robust estimate of
        the std (``stats.scale.median_abs_deviation_sorted``); NaN for degenerate
        dimensions; None for reports written before it existed.
    """

    index: NDArray[np.int64]
    count: NDArray[np.int64]
    mean: F64
    std: F64
    min: F64
    max: F64
    quantiles: F64
    skewness: F64
    excess_kurtosis: F64
    kl_gauss: F64
    negentropy: F64
    kl_marginal: F64
    outlier_rate: F64
    prior_outlier_rate: F64
    tests: dict[str, UnivariateTest]
    degenerate: NDArray[np.bool_]
    histogram: NDArray[np.int64] | None = None
    mad: F64 | None = None


def dims_to_records(
    dims: Dims, *, quantile_levels: Sequence[float], sigma_levels: Sequence[float]
) -> list[dict[str, Any]]:
    """Return one JSON object per dimension (the report's ``dims`` list)."""
    qkeys = [level_key(q) for q in quantile_levels]
    kkeys = [level_key(k) for k in sigma_levels]
    expected = gaussian_tail_rates(sigma_levels)
    records = []
    for j in range(dims.index.shape[0]):
        rate = {k: clean_float(float(dims.outlier_rate[i, j])) for i, k in enumerate(kkeys)}
        ratio = {
            k: clean_float(float(dims.outlier_rate[i, j] / expected[i]))
            for i, k in enumerate(kkeys)
        }
        rec: dict[str, Any] = {
            "index": int(dims.index[j]),
            "count": int(dims.count[j]),
            "mean": clean_float(float(dims.mean[j])),
            "std": clean_float(float(dims.std[j])),
            "min": clean_float(float(dims.min[j])),
            "max": clean_float(float(dims.max[j])),
            "quantiles": {k: clean_float(float(dims.quantiles[i, j])) for i, k in enumerate(qkeys)},
            **({"mad": clean_float(float(dims.mad[j]))} if dims.mad is not None else {}),
            "skewness": clean_float(float(dims.skewness[j])),
            "excess_kurtosis": clean_float(float(dims.excess_kurtosis[j])),
            "kl_gauss": clean_float(float(dims.kl_gauss[j])),
            "negentropy": clean_float(float(dims.negentropy[j])),
            "kl_marginal": clean_float(float(dims.kl_marginal[j])),
            "outlier_rate": rate,
            "outlier_ratio": ratio,
            "prior_outlier_rate": {
                k: clean_float(float(dims.prior_outlier_rate[i, j])) for i, k in enumerate(kkeys)
            },
            "degenerate": bool(dims.degenerate[j]),
            **(
                {"histogram": [int(c) for c in dims.histogram[j]]}
                if dims.histogram is not None
                else {}
            ),
            "tests": {
                name: {
                    "statistic": clean_float(float(t.statistic[j])),
                    "pvalue": clean_float(float(t.pvalue[j])),
                    "pvalue_holm": clean_float(float(t.pvalue_holm[j])),
                    **({"reason": t.reason[j]} if t.reason[j] else {}),
                }
                for name, t in dims.tests.items()
            },
        }
        records.append(rec)
    return records


def _nan(x: Any) -> float:
    """Return x as float, None as NaN."""
    return math.nan if x is None else float(x)


def _arr(values: Any, dtype: Any = np.float64) -> NDArray[Any]:
    """Return a list (with None for NaN) as an array."""
    if dtype is np.float64:
        return np.array([_nan(v) for v in values], dtype=np.float64) if values else np.empty(0)
    return np.asarray(values, dtype=dtype)


def records_to_dims(
    records: list[dict[str, Any]],
    *,
    quantile_levels: Sequence[float],
    sigma_levels: Sequence[float],
) -> Dims:
    """Rebuild the columnar :class:`Dims` from one JSON object per dimension."""
    qkeys = [level_key(q) for q in quantile_levels]
    kkeys = [level_key(k) for k in sigma_levels]

    def col(name: str) -> F64:
        return _arr([r.get(name) for r in records])

    def table(name: str, keys: list[str]) -> F64:
        if not records:
            return np.empty((len(keys), 0))
        return np.array(
            [[_nan(r.get(name, {}).get(k)) for r in records] for k in keys], dtype=np.float64
        )

    names = list(records[0].get("tests", {})) if records else []
    tests = {
        name: UnivariateTest(
            statistic=_arr([r["tests"][name].get("statistic") for r in records]),
            pvalue=_arr([r["tests"][name].get("pvalue") for r in records]),
            pvalue_holm=_arr([r["tests"][name].get("pvalue_holm") for r in records]),
            reason=tuple(r["tests"][name].get("reason") for r in records),
        )
        for name in names
    }
    return Dims(
        index=np.array([r["index"] for r in records], dtype=np.int64),
        count=np.array([r.get("count", 0) for r in records], dtype=np.int64),
        mean=col("mean"),
        std=col("std"),
        min=col("min"),
        max=col("max"),
        quantiles=table("quantiles", qkeys),
        skewness=col("skewness"),
        excess_kurtosis=col("excess_kurtosis"),
        kl_gauss=col("kl_gauss"),
        negentropy=col("negentropy"),
        kl_marginal=col("kl_marginal"),
        outlier_rate=table("outlier_rate", kkeys),
        prior_outlier_rate=table("prior_outlier_rate", kkeys),
        tests=tests,
        degenerate=np.array([bool(r.get("degenerate", False)) for r in records], dtype=bool),
        histogram=(
            np.array([r["histogram"] for r in records], dtype=np.int64)
            if records and all("histogram" in r for r in records)
            else None
        ),
        mad=col("mad") if records and all("mad" in r for r in records) else None,
    )
