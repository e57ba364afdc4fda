"""The verdict's rules: each turns figures into one finding, on plain arrays.

:mod:`latentcheck.verdict` applies them to a report (and re-exports every name here).

Is the scale constrained? Are outliers suppressed? Is q(z) Gaussian? How many dimensions are
used, and are some dead? Each finding quotes the figures it rests on, names the dimensions it
is about, and carries a stable machine name (``code``) for CI gates.

Every rule judges an **effect size** against a stated threshold; where a test applies, its
p-value is a second condition that keeps sampling noise from triggering the rule, never the
trigger alone (with thousands of rows every test rejects departures nobody cares about).
The thresholds are module constants, stated with their reasons in the README ("Verdict
rules"); ``tests/test_docs.py`` checks that the README quotes these values.

Negentropy of reference shapes (nats, closed form or quadrature; see ``tests/test_verdict.py``):
Student-t(10) 0.0092, t(5) 0.0468, t(3) 0.195, Laplace 0.0724, the bimodal mixture
½N(±1.5, 1) 0.0626, uniform 0.176 [1]_. A β-VAE's near-Gaussian aggregate posterior stays
below 0.01.

References
----------
.. [1] Hyvärinen, A. & Oja, E. (2000). Independent component analysis: algorithms and
   applications. Neural Networks 13(4-5):411-430 (negentropy as the measure of
   non-Gaussianity). https://doi.org/10.1016/S0893-6080(00)00026-5
.. [2] Hoffman, M. D. & Johnson, M. J. (2016). ELBO surgery: yet another way to carve up the
   variational evidence lower bound. NIPS Workshop on Advances in Approximate Bayesian
   Inference (the mixture estimate of I(x;z) is at most ln n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .model.checks import NormalizationCheckBlock
from .model.posterior import PosteriorBlock
from .model.report import Finding

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
    "dead_finding",
    "dimension_finding",
    "few_rows_finding",
    "gaussianity_finding",
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

#: std within [1/SCALE_BAND, SCALE_BAND] and |mean| below MEAN_BAND count as "like the prior".
SCALE_BAND = 2.0
MEAN_BAND = 0.5
#: largest / smallest std over the live dimensions above which per-dimension (per-channel)
#: normalisation is recommended: one global scale then leaves some dims at half the others.
SCALE_SPREAD_RATIO = 2.0
#: a dimension whose std is below this fraction of the median std is near-constant (dead):
#: it holds under 1e-4 of a typical dimension's variance.
DEAD_STD_FRACTION = 0.01
#: a dimension's negentropy (nats) at or above this is non-Gaussian: between a t(10) (0.0092)
#: and a t(5) (0.047) or bimodal ½N(±1.5, 1) (0.063) dimension.
NEGENTROPY_WARN = 0.03
#: heavy tails: a k-σ count at least TAIL_RATIO times the Gaussian expectation AND an exact
#: Poisson upper tail below TAIL_ALPHA (Bonferroni over the levels).
TAIL_RATIO = 3.0
TAIL_ALPHA = 0.001
#: outliers suppressed: significantly fewer (Poisson lower tail below alpha / levels) and
#: under 1/SUPPRESSED_RATIO of the Gaussian count at the deepest level expecting >= 5.
SUPPRESSED_RATIO = 2.0
#: below this many rows the negentropy noise on Gaussian data reaches NEGENTROPY_WARN
#: (95th percentile of the largest of 16 dims: 0.028 nats at 500 rows, 0.054 at 200).
MIN_ROWS_VERDICT = 500
#: the smallest set of dimensions carrying this share of the rate is stated.
RATE_SHARE = 0.9
#: dims named in a finding's text before "and N more".
NAMED_DIMS = 5


def _fmt(x: float) -> str:
    """Return a short number for prose."""
    if not math.isfinite(x):
        return str(x)
    if 1e3 <= abs(x) < 1e7:
        return f"{x:.0f}"
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-2):
        return f"{x:.2g}"
    return f"{x:.3g}"


def name_dims(dims: Sequence[int], *, shown: int = NAMED_DIMS, unit: str = "dim") -> str:
    """Return "dim 3", "dims 1, 4 and 7" or "dims 0, 1, 2, 3, 4 and 12 more"."""
    idx = [int(i) for i in dims]
    if not idx:
        return f"no {unit}s"
    if len(idx) == 1:
        return f"{unit} {idx[0]}"
    if len(idx) <= shown:
        return f"{unit}s " + ", ".join(map(str, idx[:-1])) + f" and {idx[-1]}"
    return f"{unit}s " + ", ".join(map(str, idx[:shown])) + f" and {len(idx) - shown} more"


def _dims(mask_or_idx: Any, index: NDArray[np.intp] | None = None) -> tuple[int, ...]:
    """Return sorted dimension indices from a boolean mask or positions into `index`."""
    arr = np.asarray(mask_or_idx)
    pos = np.flatnonzero(arr) if arr.dtype == np.bool_ else arr.astype(np.intp)
    out = pos if index is None else index[pos]
    return tuple(sorted(int(i) for i in out))


# ---------------------------------------------------------------------------------------
# the rules, each on plain arrays (unit-testable without a report)
# ---------------------------------------------------------------------------------------


def dead_finding(std: F64, degenerate: NDArray[np.bool_]) -> Finding | None:
    """Return a warn naming the constant or near-constant dimensions, or None.

    A dimension is dead when flagged degenerate (std below ``DEGENERATE_RTOL`` of the
    largest, see ``stats.scale``) or when its std is below ``DEAD_STD_FRACTION`` of the
    median std of all dimensions.
    """
    finite = np.isfinite(std)
    med = float(np.median(std[finite])) if finite.any() else math.nan
    dead = degenerate | (finite & (std < DEAD_STD_FRACTION * med))
    if not dead.any():
        return None
    idx = _dims(dead)
    stds = ", ".join(_fmt(float(std[i])) for i in idx[:NAMED_DIMS])
    return Finding(
        "dimensions",
        "warn",
        f"{len(idx)} of {std.size} dimensions are constant or nearly so ({name_dims(idx)}: "
        f"std {stds}; floor {DEAD_STD_FRACTION:g} x the median std {_fmt(med)}): they carry "
        "no information and are left out of the tests and joint statistics.",
        code="dead_dims",
        dims=idx,
    )


def scale_finding(mean: F64, std: F64, index: NDArray[np.intp]) -> Finding:
    """Return the finding on scale: per-dimension std and mean against the prior N(0, 1)."""
    lo, hi = float(np.min(std)), float(np.max(std))
    mabs = float(np.max(np.abs(mean)))
    inside = (std >= 1 / SCALE_BAND) & (std <= SCALE_BAND) & (np.abs(mean) <= MEAN_BAND)
    d = std.size
    text = f"per-dimension std {_fmt(lo)} to {_fmt(hi)}, |mean| up to {_fmt(mabs)} (prior: 1 and 0)"
    if inside.all():
        return Finding("scale", "ok", f"Scale is constrained: {text}.", code="scale_ok")
    out = _dims(~inside, index)
    return Finding(
        "scale",
        "warn",
        f"Scale is not like the prior's in {len(out)} of {d} dimensions ({name_dims(out)}; "
        f"band: std {1 / SCALE_BAND:g} to {SCALE_BAND:g}, |mean| <= {MEAN_BAND:g}): {text}.",
        code="scale_off_prior",
        dims=out,
    )


def spread_finding(std: F64, index: NDArray[np.intp], unit: str = "dimension") -> Finding | None:
    """Return a warn when max/min std over live dims exceeds ``SCALE_SPREAD_RATIO``."""
    if std.size < 2 or not np.isfinite(std).all() or float(np.min(std)) <= 0:
        return None
    lo, hi = int(np.argmin(std)), int(np.argmax(std))
    ratio = float(std[hi] / std[lo])
    if not ratio > SCALE_SPREAD_RATIO:
        return None
    return Finding(
        "scale",
        "warn",
        f"Scale differs across {unit}s: std {_fmt(float(std[lo]))} ({unit} {int(index[lo])}) "
        f"to {_fmt(float(std[hi]))} ({unit} {int(index[hi])}), a {ratio:.2g}x spread (above "
        f"{SCALE_SPREAD_RATIO:g}x); one global scale leaves some {unit}s far from unit "
        f"variance: normalise per {unit} (summary.normalization.per_dim_shift / per_dim_scale, "
        "diffusers' latents_mean / latents_std).",
        code="scale_spread",
        dims=tuple(sorted({int(index[lo]), int(index[hi])})),
    )


def poisson_tails(observed: float, expected: float) -> tuple[float, float]:
    """Return P(X <= observed) and P(X >= observed) for X ~ Poisson(expected)."""
    from scipy.stats import poisson

    k = round(observed)
    return float(poisson.cdf(k, expected)), float(poisson.sf(k - 1, expected))


def _heavy(obs: float, exp: float, n_levels: int) -> bool:
    """Return True if `obs` k-σ values against `exp` expected meet both heavy-tail rules."""
    return obs >= TAIL_RATIO * exp and poisson_tails(obs, exp)[1] < TAIL_ALPHA / max(n_levels, 1)


def outlier_finding(
    rates: F64,
    expected: F64,
    levels: F64,
    n_values: int,
    alpha: float = 0.05,
    *,
    dim_rates: F64 | None = None,
    n_rows: int = 0,
    index: NDArray[np.intp] | None = None,
) -> Finding:
    """Return the finding on outliers from pooled k-σ rates (shape (n_levels,)).

    Rates are turned into counts over the `n_values` values and compared with the Gaussian
    expectation 2Φ(−k). Tails are heavy when some level holds at least ``TAIL_RATIO`` times
    the expected count AND the exact Poisson upper tail is below ``TAIL_ALPHA`` divided by
    the number of levels: 9 values beyond 4 std of 50,000 (3.2 expected: ratio 2.8,
    P = 0.0045) is not heavy. The dims named are those meeting the same two rules on their
    own counts (`dim_rates` of shape (n_levels, n_dims) over `n_rows` rows each).
    Otherwise the deepest level with at least 5 expected values decides: suppressed when it
    has significantly fewer (Poisson lower tail below `alpha` / levels) and under
    1/``SUPPRESSED_RATIO`` as many, lighter when significantly fewer, else as a Gaussian's.
    """
    if not np.isfinite(rates).all():
        return Finding("outliers", "note", "Outlier rates could not be computed.", code="outliers")
    obs = rates * n_values
    exp = expected * n_values
    nl = levels.size
    heavy = [i for i in range(nl) if _heavy(float(obs[i]), float(exp[i]), nl)]
    k = 1 if nl > 1 else 0  # 4σ is the headline level: 3σ is too common
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
        named: tuple[int, ...] = ()
        if dim_rates is not None and n_rows > 0:
            e = float(expected[k] * n_rows)
            hit = [
                j
                for j in range(dim_rates.shape[1])
                if np.isfinite(dim_rates[k, j]) and _heavy(float(dim_rates[k, j] * n_rows), e, nl)
            ]
            named = _dims(np.asarray(hit, dtype=np.intp), index)
        where = f" ({name_dims(named)})" if named else ""
        rule = (
            f"rule: >= {TAIL_RATIO:g}x the Gaussian count and Poisson "
            f"P(X >= {round(obs[k])}) < {TAIL_ALPHA:g}/{nl}"
        )
        return Finding(
            "outliers",
            "warn",
            f"Heavy tails{where}: {head}{tail}; {rule}.",
            code="heavy_tails",
            dims=named,
        )
    testable = [i for i in range(nl) if exp[i] >= 5]
    if not testable:
        return Finding(
            "outliers", "ok", f"Tails as a Gaussian's: {head}{tail}.", code="gaussian_tails"
        )
    j = testable[-1]
    low = poisson_tails(obs[j], exp[j])[0]
    counted = (
        f"{round(obs[j])} values lie beyond {levels[j]:g} std of their mean where a Gaussian "
        f"gives {_fmt(exp[j])} ({_fmt(100 * rates[j])}% against {_fmt(100 * expected[j])}%, "
        f"Poisson P(X <= {round(obs[j])}) = {low:.2g})"
    )
    a = alpha / max(nl, 1)
    if low < a and obs[j] < exp[j] / SUPPRESSED_RATIO:
        return Finding(
            "outliers", "ok", f"Outliers suppressed: {counted}{tail}.", code="outliers_suppressed"
        )
    if low < a:
        text = f"Tails lighter than a Gaussian's: {counted}{tail}."
        return Finding("outliers", "ok", text, code="light_tails")
    return Finding(
        "outliers", "ok", f"Tails as a Gaussian's: {counted}{tail}.", code="gaussian_tails"
    )


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
    """Return the finding on Gaussianity of the marginals, judged by negentropy.

    A dimension is non-Gaussian when its negentropy is at least ``NEGENTROPY_WARN`` nats
    (the effect) AND `test_name` rejects it after Holm's adjustment (so that estimator noise
    on few rows cannot trigger the rule). The rejections alone are evidence only: with
    thousands of rows the test rejects departures of 0.005 nats.
    """
    finite = np.isfinite(negentropy)
    med = float(np.median(negentropy[finite])) if finite.any() else math.nan
    worst = int(np.argmax(np.where(finite, negentropy, -np.inf))) if finite.any() else -1
    kmax = float(np.nanmax(np.abs(kurtosis))) if np.isfinite(kurtosis).any() else math.nan
    n_rej = int(rejected.sum())
    big = finite & (np.where(finite, negentropy, 0.0) >= NEGENTROPY_WARN)
    flagged = big & rejected
    parts = [f"median negentropy {_fmt(med)} nats"]
    if worst >= 0:
        parts.append(
            f"largest {_fmt(float(negentropy[worst]))} nats (dim {int(index[worst])}, excess "
            f"kurtosis {_fmt(float(kurtosis[worst]))})"
        )
    parts.append(f"|excess kurtosis| up to {_fmt(kmax)}")
    parts.append(
        f"evidence: {n_rej} of {tested} dimensions rejected by {test_name} "
        f"(Holm, alpha {alpha:g}, {n_test} rows)"
    )
    if math.isfinite(total_correlation):
        parts.append(f"Gaussian total correlation {_fmt(total_correlation)} nats")
    detail = "; ".join(parts)
    if tested == 0 or not finite.any():
        return Finding(
            "gaussianity", "note", f"Gaussianity not tested: {detail}.", code="gaussianity_untested"
        )
    if not flagged.any():
        return Finding(
            "gaussianity",
            "ok",
            f"Marginals close to Gaussian (every negentropy below {NEGENTROPY_WARN:g} nats or "
            f"not significant): {detail}.",
            code="gaussian",
        )
    dims = _dims(flagged, index)
    pos = np.flatnonzero(flagged)
    each = ", ".join(
        f"{int(index[p])}: {_fmt(float(negentropy[p]))}" for p in pos[np.argsort(index[pos])][:5]
    )
    return Finding(
        "gaussianity",
        "warn",
        f"Marginals are not Gaussian in {len(dims)} of {negentropy.size} dimensions "
        f"({name_dims(dims)}; negentropy {each} nats, at or above {NEGENTROPY_WARN:g}: a "
        f"Student-t(5) has 0.047): {detail}.",
        code="non_gaussian",
        dims=dims,
    )


def dimension_finding(
    effective_dims: float, n_dims: int, active: int | None, n_live: int | None = None
) -> Finding:
    """Return the finding on how many dimensions are used (counted over all `n_dims`)."""
    parts = []
    if active is not None:
        parts.append(f"{active} of {n_dims} dimensions are active (Var_x E[z|x] > 0.01)")
    if math.isfinite(effective_dims):
        live = (
            f", over the {n_live} non-constant ones"
            if n_live is not None and n_live != n_dims
            else ""
        )
        parts.append(
            f"effective dimensionality {_fmt(effective_dims)} of {n_dims} "
            f"(participation ratio of the covariance spectrum{live})"
        )
    if not parts:
        return Finding(
            "dimensions", "note", f"{n_dims} dimensions (joint part skipped).", code="dimensions"
        )
    text = "; ".join(parts)
    return Finding("dimensions", "note", text[0].upper() + text[1:] + ".", code="dimensions")


def rate_findings(posterior: PosteriorBlock | Mapping[str, Any]) -> list[Finding]:
    """Return the findings on the rate the KL term pays (posterior inputs only).

    The rate, its concentration (the fewest dims carrying ``RATE_SHARE`` of it), collapsed
    dims (rate below the collapse threshold: a warn naming them), and I(x;z), stated as a
    lower bound when the mixture estimate sits at its ceiling ln n [2]_. A mapping (the
    block's JSON form, possibly partial) is read as a :class:`PosteriorBlock`.
    """
    post = (
        posterior if isinstance(posterior, PosteriorBlock) else PosteriorBlock.from_dict(posterior)
    )
    rate = float(post.rate_nats)
    raw_mean = float(post.rate_mean_part_nats)
    mean_part = 0.0 if math.isnan(raw_mean) else raw_mean
    collapsed = [int(i) for i in post.collapsed_dims]
    share = mean_part / rate if rate > 0 else math.nan
    per = "row" if post.rows_per_sample == 1 else "row (position)"
    split = (
        f", {_fmt(100 * share)}% of it for moving means and the rest for shrinking variances"
        if math.isfinite(share)
        else ""
    )
    text = f"The KL term pays {_fmt(rate)} nats per {per}{split}"
    per_dim = np.array(post.kl_per_dim if post.kl_per_dim is not None else [], dtype=np.float64)
    conc: tuple[int, ...] = ()
    if per_dim.size and np.isfinite(per_dim).all() and per_dim.sum() > 0:
        order = np.argsort(-per_dim, kind="stable")
        cum = np.cumsum(per_dim[order]) / per_dim.sum()
        m = int(np.searchsorted(cum, RATE_SHARE - 1e-12) + 1)
        conc = tuple(sorted(int(i) for i in order[:m]))
        text += (
            f"; {len(conc)} of {per_dim.size} dimensions carry {RATE_SHARE:.0%} of it "
            f"({name_dims(conc)})"
        )
    notes: list[str] = []
    ceiling = post.mi_ceiling()
    if post.has_mutual_information:
        mi_f = float(post.mutual_information)
        if ceiling is not None:
            n_mix = round(math.exp(ceiling))
            text += (
                f"; I(x;z) >= {_fmt(mi_f)} nats: at the ln n ceiling (ln {n_mix} = "
                f"{_fmt(ceiling)}); more rows are needed to estimate it"
            )
        else:
            text += f"; I(x;z) is about {_fmt(max(mi_f, 0.0))} nats"
            if mi_f < 0:
                notes.append(f"the I(x;z) estimate {_fmt(mi_f)} was clipped at 0")
    dwk = post.dimwise_kl
    if dwk < 0:
        notes.append(
            f"the dimension-wise KL estimate {_fmt(float(dwk))} nats is below 0, its lower "
            "bound: read it as 0 (Monte-Carlo noise)"
        )
    if notes:
        text += " (" + "; ".join(notes) + ")"
    out = [Finding("rate", "note", text + ".", code="rate", dims=conc)]
    if collapsed:
        thr = post.collapse_threshold
        out.append(
            Finding(
                "rate",
                "warn",
                f"{len(collapsed)} dimension(s) collapsed to the prior ({name_dims(collapsed)}: "
                f"rate below {_fmt(float(thr or 0.01))} nats each): the decoder cannot read "
                "them.",
                code="collapsed_dims",
                dims=tuple(sorted(collapsed)),
            )
        )
    return out


def rate_finding(posterior: PosteriorBlock | Mapping[str, Any]) -> Finding:
    """Return the note on the rate alone (the first of :func:`rate_findings`)."""
    return rate_findings(posterior)[0]


def nonfinite_finding(bad_rows: int, total_rows: int) -> Finding | None:
    """Return a warn when rows held NaN or inf (they were left out), or None."""
    if bad_rows <= 0:
        return None
    return Finding(
        "input",
        "warn",
        f"{bad_rows} of {total_rows} rows ({_fmt(100 * bad_rows / max(total_rows, 1))}%) hold "
        "NaN or inf and were left out of every statistic: find where the encoder produced "
        "them.",
        code="non_finite_rows",
    )


def few_rows_finding(n_rows: int) -> Finding | None:
    """Return a warn when there are too few rows for the thresholds to be meaningful."""
    if n_rows >= MIN_ROWS_VERDICT:
        return None
    return Finding(
        "input",
        "warn",
        f"Too few rows to judge: {n_rows} rows, fewer than {MIN_ROWS_VERDICT}; below that the "
        "estimates' noise is as large as the verdict's thresholds, so an ok finding means "
        "little.",
        code="too_few_rows",
    )


def normalization_finding(check: NormalizationCheckBlock | None) -> Finding | None:
    """Return a warn for the mistakes a claimed normalisation check found, or None.

    ``per_channel_needed`` is left to the scale-spread finding: its fix is per-channel
    constants, and passing the tool's own global constants back is not a mistake.
    """
    if check is None or not check.has_claim:
        return None
    mistakes = [m for m in check.mistakes if m != "per_channel_needed"]
    if not mistakes and check.verdict != "off":
        return None
    msgs = [
        str(t)
        for t, m in zip(check.messages, check.mistakes, strict=False)
        if m != "per_channel_needed"
    ]
    if not mistakes:
        msgs = [str(t) for t in check.messages][:1]
    name = ", ".join(mistakes) or "off"
    shift = 0.0 if check.assume_shift is None else float(check.assume_shift)
    scale = math.nan if check.assume_scale is None else float(check.assume_scale)
    return Finding(
        "normalization",
        "warn",
        f"The claimed normalisation (z - {_fmt(shift)}) * {_fmt(scale)} is wrong ({name}): "
        + " ".join(msgs).rstrip(".")
        + ".",
        code="normalization_mistake",
    )
