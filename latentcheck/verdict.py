"""The verdict: a few plain sentences that answer the questions users come with.

Is the scale constrained? Are outliers suppressed? Is q(z) Gaussian? How many dimensions are
used? Each finding quotes the figures it rests on, so a reader can check it against the
tables below it. The thresholds are rules of thumb, stated in the README.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .report import Finding

__all__ = ["build_findings"]

F64 = NDArray[np.float64]

#: std within [1/SCALE_BAND, SCALE_BAND] and |mean| below MEAN_BAND count as "like the prior".
SCALE_BAND = 2.0
MEAN_BAND = 0.5
#: a k-σ rate more than this many times the Gaussian expectation counts as heavy-tailed.
TAIL_RATIO = 2.0
#: median negentropy (nats) below which the marginals count as close to Gaussian.
NEGENTROPY_SMALL = 0.01


def _fmt(x: float) -> str:
    """Return a short number for prose."""
    if not math.isfinite(x):
        return str(x)
    if 1e3 <= abs(x) < 1e7:
        return f"{x:.0f}"
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-2):
        return f"{x:.2g}"
    return f"{x:.3g}"


def scale_finding(mean: F64, std: F64) -> Finding:
    """Return the finding on scale: per-dimension std and mean against the prior."""
    lo, hi = float(np.min(std)), float(np.max(std))
    mabs = float(np.max(np.abs(mean)))
    inside = (std >= 1 / SCALE_BAND) & (std <= SCALE_BAND) & (np.abs(mean) <= MEAN_BAND)
    d = std.size
    text = f"per-dimension std {_fmt(lo)} to {_fmt(hi)}, |mean| up to {_fmt(mabs)} (prior: 1 and 0)"
    if inside.all():
        return Finding("scale", "ok", f"Scale is constrained: {text}.")
    return Finding(
        "scale",
        "warn",
        f"Scale is not like the prior's in {int(d - inside.sum())} of {d} dimensions: {text}.",
    )


def _poisson_tails(observed: float, expected: float) -> tuple[float, float]:
    """Return P(X <= observed) and P(X >= observed) for X ~ Poisson(expected)."""
    from scipy.stats import poisson

    k = round(observed)
    return float(poisson.cdf(k, expected)), float(poisson.sf(k - 1, expected))


def outlier_finding(
    rates: F64, expected: F64, levels: F64, n_values: int, alpha: float = 0.05
) -> Finding:
    """Return the finding on outliers from pooled k-σ rates (shape (n_levels,)).

    Rates are turned into counts over the `n_values` values and compared with the Gaussian
    expectation by exact Poisson tails, Bonferroni-corrected over the levels: tails count as
    heavy when some level has significantly more values than expected and more than
    ``TAIL_RATIO`` times as many. Otherwise the deepest level with at least 5 expected values
    decides: suppressed when it has significantly fewer and under 1/``TAIL_RATIO`` as many,
    lighter when significantly fewer but not that few, else as a Gaussian's (zero values
    beyond 4 std is no evidence when 1.8 are expected).
    """
    if not np.isfinite(rates).all():
        return Finding("outliers", "note", "Outlier rates could not be computed.")
    obs = rates * n_values
    exp = expected * n_values
    a = alpha / max(levels.size, 1)
    heavy = [
        i
        for i in range(levels.size)
        if obs[i] > TAIL_RATIO * exp[i] and _poisson_tails(obs[i], exp[i])[1] < a
    ]
    k = 1 if levels.size > 1 else 0  # 4σ is the headline level: 3σ is too common
    if heavy:
        k = heavy[0] if k not in heavy else k
    head = (
        f"{_fmt(100 * rates[k])}% of values lie beyond {levels[k]:g} std of their mean "
        f"({round(obs[k])} of {n_values}; a Gaussian gives {_fmt(exp[k])}, "
        f"{_fmt(100 * expected[k])}%)"
    )
    far = levels[-1]
    tail = f"; {_fmt(100 * rates[-1])}% beyond {far:g} std" if rates[-1] > 0 else ""
    if heavy:
        return Finding("outliers", "warn", f"Heavy tails: {head}{tail}.")
    testable = [i for i in range(levels.size) if exp[i] >= 5]
    if not testable:
        return Finding("outliers", "ok", f"Tails as a Gaussian's: {head}{tail}.")
    j = testable[-1]
    low = _poisson_tails(obs[j], exp[j])[0]
    counted = (
        f"{round(obs[j])} values lie beyond {levels[j]:g} std of their mean where a Gaussian "
        f"gives {_fmt(exp[j])} ({_fmt(100 * rates[j])}% against {_fmt(100 * expected[j])}%, "
        f"Poisson P(X <= {round(obs[j])}) = {low:.2g})"
    )
    if low < a and obs[j] < exp[j] / TAIL_RATIO:
        return Finding("outliers", "ok", f"Outliers suppressed: {counted}{tail}.")
    if low < a:
        return Finding("outliers", "ok", f"Tails lighter than a Gaussian's: {counted}{tail}.")
    return Finding("outliers", "ok", f"Tails as a Gaussian's: {counted}{tail}.")


def gaussianity_finding(
    negentropy: F64,
    kurtosis: F64,
    rejected: NDArray[np.bool_],
    tested: int,
    test_name: str,
    alpha: float,
    n_test: int,
    total_correlation: float,
    index: NDArray[np.intp],
) -> Finding:
    """Return the finding on Gaussianity of the marginals (and joint dependence).

    Effect sizes lead (negentropy, kurtosis): with many rows every test rejects, so the
    count of rejected dimensions is given as evidence beside them.
    """
    finite = np.isfinite(negentropy)
    med = float(np.median(negentropy[finite])) if finite.any() else math.nan
    worst = int(np.argmax(np.where(finite, negentropy, -np.inf))) if finite.any() else -1
    kmax = float(np.nanmax(np.abs(kurtosis))) if np.isfinite(kurtosis).any() else math.nan
    n_rej = int(rejected.sum())
    parts = [f"median negentropy {_fmt(med)} nats"]
    if worst >= 0:
        parts.append(
            f"largest {_fmt(float(negentropy[worst]))} nats (dim {int(index[worst])}, excess "
            f"kurtosis {_fmt(float(kurtosis[worst]))})"
        )
    parts.append(f"|excess kurtosis| up to {_fmt(kmax)}")
    parts.append(
        f"{n_rej} of {tested} dimensions rejected by {test_name} "
        f"(Holm, alpha {alpha:g}, {n_test} rows)"
    )
    if math.isfinite(total_correlation):
        parts.append(f"Gaussian total correlation {_fmt(total_correlation)} nats")
    detail = "; ".join(parts)
    if tested == 0:
        return Finding("gaussianity", "note", f"Gaussianity not tested: {detail}.")
    if n_rej == 0 and not med > NEGENTROPY_SMALL:
        return Finding("gaussianity", "ok", f"Marginals look Gaussian: {detail}.")
    return Finding(
        "gaussianity",
        "warn",
        f"Marginals are not Gaussian in {n_rej} of {tested} dimensions: {detail}.",
    )


def dimension_finding(effective_dims: float, n_dims: int, active: int | None) -> Finding:
    """Return the finding on how many dimensions are used."""
    parts = []
    if active is not None:
        parts.append(f"{active} of {n_dims} dimensions are active (Var_x E[z|x] > 0.01)")
    if math.isfinite(effective_dims):
        parts.append(
            f"effective dimensionality {_fmt(effective_dims)} of {n_dims} "
            "(participation ratio of the covariance spectrum)"
        )
    if not parts:
        return Finding("dimensions", "note", f"{n_dims} dimensions (joint part skipped).")
    text = "; ".join(parts)
    return Finding("dimensions", "note", text[0].upper() + text[1:] + ".")


def rate_finding(posterior: dict[str, Any]) -> Finding:
    """Return the finding on the rate the KL term pays (posterior inputs only)."""
    raw_rate = posterior.get("rate_nats")
    rate = math.nan if raw_rate is None else float(raw_rate)
    raw_mean = posterior.get("rate_mean_part_nats")
    mean_part = 0.0 if raw_mean is None else float(raw_mean)
    collapsed = posterior.get("collapsed_dims") or []
    n_coll = len(collapsed)
    share = mean_part / rate if rate > 0 else math.nan
    per = "row" if int(posterior.get("rows_per_sample") or 1) == 1 else "row (position)"
    split = (
        f", {_fmt(100 * share)}% of it for moving means and the rest for shrinking variances"
        if math.isfinite(share)
        else ""
    )
    text = (
        f"The KL term pays {_fmt(rate)} nats per {per}{split}; {n_coll} dimension(s) "
        "collapsed to the prior"
    )
    mi = posterior.get("mutual_information")
    if mi is not None:
        text += f"; I(x;z) is about {_fmt(float(mi))} nats"
    return Finding("rate", "note", text + ".")


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
) -> tuple[Finding, ...]:
    """Return the findings in the order the report shows them."""
    return (
        scale_finding(mean, std),
        outlier_finding(pooled_rates, expected, levels, n_values, alpha),
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
        dimension_finding(effective_dims, int(std.size), active),
    )
