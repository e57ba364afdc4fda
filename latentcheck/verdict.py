"""The verdict: a few plain sentences that answer the questions users come with.

Is the scale constrained? Are outliers suppressed? Is q(z) Gaussian? How many dimensions are
used, and are some dead? :func:`judge` applies the rules of
:mod:`latentcheck.verdict_rules` (each on plain arrays, with its threshold and reason) to a
report's figures, in the order the report shows them. Every public name of the rules module
is re-exported here, so ``latentcheck.verdict`` stays the one place to import them from.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .model.report import Finding, Report
from .verdict_rules import (
    DEAD_STD_FRACTION,
    MEAN_BAND,
    MIN_ROWS_VERDICT,
    NAMED_DIMS,
    NEGENTROPY_WARN,
    RATE_SHARE,
    SCALE_BAND,
    SCALE_SPREAD_RATIO,
    SUPPRESSED_RATIO,
    TAIL_ALPHA,
    TAIL_RATIO,
    dead_finding,
    dimension_finding,
    few_rows_finding,
    gaussianity_finding,
    name_dims,
    nonfinite_finding,
    normalization_finding,
    outlier_finding,
    poisson_tails,
    rate_finding,
    rate_findings,
    scale_finding,
    spread_finding,
)

__all__ = [
    "DEAD_STD_FRACTION",
    "MEAN_BAND",
    "MIN_ROWS_VERDICT",
    "NAMED_DIMS",
    "NEGENTROPY_WARN",
    "RATE_SHARE",
    "SCALE_BAND",
    "SCALE_SPREAD_RATIO",
    "SUPPRESSED_RATIO",
    "TAIL_ALPHA",
    "TAIL_RATIO",
    "build_findings",
    "dead_finding",
    "dimension_finding",
    "few_rows_finding",
    "gaussianity_finding",
    "judge",
    "name_dims",
    "nonfinite_finding",
    "normalization_finding",
    "outlier_finding",
    "poisson_tails",
    "rate_finding",
    "rate_findings",
    "scale_finding",
    "spread_finding",
]

F64 = NDArray[np.float64]


def build_findings(
    *,
    mean: F64,
    std: F64,
    pooled_rates: F64,
    n_values: int,
    expected: F64,
    levels: F64,
    negentropy: F64,
    kurtosis: F64,
    rejected: NDArray[np.bool_],
    tested: int,
    test_name: str,
    alpha: float,
    n_test: int,
    total_correlation: float,
    effective_dims: float,
    index: NDArray[np.intp],
    active: int | None = None,
    n_dims: int | None = None,
    dim_rates: F64 | None = None,
    n_rows: int = 0,
    unit: str = "dimension",
) -> tuple[Finding, ...]:
    """Return the core findings (live dims only) in the order the report shows them."""
    spread = spread_finding(std, index, unit)
    return (
        scale_finding(mean, std, index),
        *((spread,) if spread is not None else ()),
        outlier_finding(
            pooled_rates,
            expected,
            levels,
            n_values,
            alpha,
            dim_rates=dim_rates,
            n_rows=n_rows,
            index=index,
        ),
        gaussianity_finding(
            negentropy,
            kurtosis,
            rejected,
            tested,
            test_name,
            alpha,
            n_test,
            total_correlation,
            index,
        ),
        dimension_finding(
            effective_dims, int(std.size) if n_dims is None else n_dims, active, int(std.size)
        ),
    )


def _headline_rows(report: Report, default: int) -> int:
    """Return the rows the headline tests ran on: separated ones for conv latents (issue 15)."""
    head = None if report.spatial is None else report.spatial.headline_tests
    return default if head is None else int(head.n_rows)


def judge(report: Report) -> tuple[Finding, ...]:
    """Return the verdict's findings for a report: the rules applied to its figures.

    Warns about the input first (too few rows, NaN rows, dead dims), then the core
    findings on the live dimensions, then the rate (posteriors) and a claimed normalisation.
    """
    sm, dm, inp, st = report.summary, report.dims, report.input, report.settings
    d = int(dm.std.size)
    degenerate = np.asarray(dm.degenerate, dtype=bool)
    live = ~degenerate
    idx = np.flatnonzero(live) if live.any() else np.arange(d)
    sel = live if live.any() else np.ones(d, dtype=bool)
    levels = np.asarray(st.sigma_levels, dtype=np.float64)
    keys = list(sm.outlier_rate)
    pooled = np.array(
        [math.nan if sm.outlier_rate[k] is None else sm.outlier_rate[k] for k in keys]
    )
    expected = st.expected_outlier_rates
    n = int(inp.n_samples)
    shapiro = dm.tests.get("shapiro")
    if shapiro is not None:
        rejected = np.asarray(shapiro.pvalue_holm < st.alpha)[sel]
        tested = int(np.isfinite(shapiro.pvalue).sum())
    else:
        rejected, tested = np.zeros(int(sel.sum()), dtype=bool), 0
    post = report.posterior
    active = int(post.active_units) if post and post.active_units is not None else None
    conv = "channels are the dimensions" in inp.layout
    out: list[Finding] = []
    for extra in (
        few_rows_finding(n),
        nonfinite_finding(int(inp.non_finite_rows), int(inp.n_rows_total)),
        dead_finding(np.asarray(dm.std, dtype=np.float64), degenerate),
    ):
        if extra is not None:
            out.append(extra)
    out.extend(
        build_findings(
            mean=dm.mean[sel],
            std=dm.std[sel],
            pooled_rates=pooled,
            n_values=n * int(sel.sum()),
            expected=expected,
            levels=levels,
            negentropy=dm.negentropy[sel],
            kurtosis=dm.excess_kurtosis[sel],
            rejected=rejected,
            tested=tested,
            test_name="Shapiro-Wilk at well-separated positions" if conv else "Shapiro-Wilk",
            alpha=float(st.alpha),
            n_test=_headline_rows(report, min(int(st.test_samples), n)),
            total_correlation=float(report.joint.total_correlation),
            effective_dims=float(report.joint.effective_dims),
            index=idx,
            active=active,
            n_dims=d,
            dim_rates=np.asarray(dm.outlier_rate)[:, sel],
            n_rows=n,
            unit="channel" if conv else "dimension",
        )
    )
    if post:
        out.extend(rate_findings(post))
    norm = normalization_finding(sm.normalization_check)
    if norm is not None:
        out.append(norm)
    return tuple(out)
