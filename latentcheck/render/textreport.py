"""Text rendering of a :class:`~latentcheck.model.report.Report` for a terminal.

Verdict first, then the headline figures, then the per-dimension table. Every line fits the
requested width (100 columns by default); every number carries its unit or its definition
in the column header. This module reads the report; it computes nothing but formatting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model.posterior import PosteriorBlock
from ..model.report import Report
from .dimtable import dim_table
from .formatting import fmt as fmt
from .formatting import pct as pct
from .formatting import pval as pval
from .formatting import table as table
from .formatting import wrap as wrap
from .registry import RenderOptions, register

__all__ = [
    "fmt",
    "render_report",
    "render_summary",
    "render_verdict",
    "table",
    "verdict_lines",
]

MARK = {"ok": "ok  ", "note": "note", "warn": "WARN"}


def _kv(label: str, value: str, width: int, label_width: int = 24) -> list[str]:
    """Return a 'label  value' block, wrapping the value under itself."""
    pad = " " * (label_width + 2)
    return wrap(value, width, indent=pad, first=f"  {label:<{label_width - 2}}")


def verdict_lines(report: Report, width: int = 100) -> list[str]:
    """Return the VERDICT block: one wrapped line per finding, its code in brackets."""
    out = ["VERDICT"]
    for f in report.summary.findings:
        text = f"{f.text} [{f.code}]" if f.code else f.text
        out.extend(wrap(text, width, indent=" " * 9, first=f"  {MARK.get(f.status, f.status)}   "))
    return out


def render_verdict(report: Report, *, width: int = 100) -> str:
    """Return the verdict alone (``latentcheck report -q``)."""
    return "\n".join(verdict_lines(report, width)) + "\n"


def render_summary(report: Report) -> str:
    """Return a short summary: what was read, and the verdict (``print(report)``)."""
    inp = report.input
    head = f"latentcheck report: {', '.join(inp.sources)} ({inp.n_samples} rows x "
    head += f"{inp.n_dims} dims)\n"
    return head + render_verdict(report) + "Full report: report.to_text(); JSON: to_json().\n"


def render_report(
    report: Report, *, width: int = 100, max_dims: int = 64, precision: int = 3
) -> str:
    """Return the text report.

    Parameters
    ----------
    report : Report
    width : int, default=100
        Terminal width to fit.
    max_dims : int, default=64
        Show at most this many dimensions in the table (those with the largest
        ``kl_marginal``), with a note saying so.
    precision : int, default=3
        Significant digits of numbers.
    """
    p = precision
    inp, st = report.input, report.settings
    out: list[str] = []
    title = f"latentcheck {report.tool.get('version', '')}: {', '.join(inp.sources)}"
    out.extend(wrap(title, width))
    out.extend(wrap(inp.layout + f"; dtype {inp.dtype}", width, indent="  ", first="  "))
    rows_line = f"{inp.n_samples} rows used"
    if inp.non_finite_rows:
        rows_line += f" ({inp.non_finite_rows} rows with NaN/inf left out)"
    rows_line += f"; analysed: {inp.aggregate}; seed {st.seed}"
    out.extend(wrap(rows_line, width, indent="  ", first="  "))
    out.append("")

    out.extend(verdict_lines(report, width))
    out.append("")

    out.extend(_summary_lines(report, width, p))
    out.append("")

    out.extend(_dims_table(report, width, max_dims, p))
    if report.spatial:
        out.append("")
        out.extend(_spatial_block(report, width, p))
    if report.posterior:
        out.append("")
        out.extend(_posterior_block(report, width, p, max_dims))
    notes = list(inp.notes) + [w for w in report.warnings if w not in inp.notes]
    if notes:
        out.append("")
        out.append("NOTES")
        for n in notes:
            out.extend(wrap(n, width, indent="    ", first="  - "))
    out.append("")
    out.extend(
        wrap(
            "Units: KL and negentropy in nats; rates are fractions of values shown as %; "
            "std in the data's units. Definitions: README, section 'What the figures mean'.",
            width,
        )
    )
    return "\n".join(line.rstrip() for line in out) + "\n"


def _summary_lines(report: Report, width: int, p: int) -> list[str]:
    """Return the SUMMARY block: KL, the joint fit, outliers, normalisation, tests."""
    inp, st, sm, dm, jt = report.input, report.settings, report.summary, report.dims, report.joint
    out: list[str] = []
    out.append("SUMMARY")
    out.extend(
        _kv(
            "KL to N(0,1)",
            f"sum over dims of kl_gauss {fmt(sm.kl_gauss_sum, p)} + negentropy "
            f"{fmt(sm.negentropy_sum, p)} = kl_marginal {fmt(sm.kl_marginal_sum, p)} nats",
            width,
        )
    )
    if jt.skipped is None:
        out.extend(
            _kv(
                "Joint Gaussian fit",
                f"KL(N(m,S) || N(0,I)) {fmt(jt.kl_gauss, p)} nats = sum kl_gauss "
                f"{fmt(jt.kl_gauss_dims, p)} + total correlation "
                f"{fmt(jt.total_correlation, p)}",
                width,
            )
        )
        out.extend(
            _kv(
                "Dimensions",
                f"effective {fmt(jt.effective_dims, p)} of {inp.n_dims} (participation "
                f"ratio); condition number {fmt(jt.condition_number, p)}",
                width,
            )
        )
    else:
        out.extend(_kv("Joint", f"skipped: {jt.skipped}", width))
    keys = list(sm.outlier_rate)
    rates = "  ".join(
        f"{k}sd {pct(sm.outlier_rate[k], 2)} ({fmt(sm.outlier_ratio[k], 2)}x)" for k in keys
    )
    out.extend(
        _kv(
            "Outliers",
            f"{rates}  [share of values beyond k std of the dim mean; "
            "(x) = times the Gaussian rate]",
            width,
        )
    )
    prior = "  ".join(f"|z|>{k} {pct(sm.prior_outlier_rate[k], 2)}" for k in keys)
    exp = "  ".join(f"{k}sd {pct(sm.expected_outlier_rate[k], 2)}" for k in keys)
    out.extend(_kv("Against N(0,1)", prior, width))
    out.extend(_kv("Gaussian expectation", exp, width))
    nz = sm.normalization
    out.extend(
        _kv(
            "Normalisation",
            f"(z - shift) * scale with shift {fmt(nz.shift, 4)} [95% CI {fmt(nz.shift_ci[0], 4)}, "
            f"{fmt(nz.shift_ci[1], 4)}], scale {fmt(nz.scale, 4)} [{fmt(nz.scale_ci[0], 4)}, "
            f"{fmt(nz.scale_ci[1], 4)}]; per dim: (z - mean) / std from the table",
            width,
        )
    )
    rej = ", ".join(f"{name} {count}" for name, count in sm.dims_rejected.items())
    tested = int(np.isfinite(dm.tests["shapiro"].pvalue).sum()) if "shapiro" in dm.tests else 0
    out.extend(
        _kv(
            "Normality tests",
            f"dims rejected at alpha {st.alpha:g} after Holm, of {tested} tested on "
            f"{test_rows(report)}: {rej}",
            width,
        )
    )
    out.extend(_claim_lines(report, width, p))
    if jt.skipped is None and jt.top_pairs:
        pairs = ", ".join(f"({i},{j}) r={r:+.2f}" for i, j, r in jt.top_pairs[:5])
        out.extend(_kv("Most correlated", pairs, width))
    for line in _joint_tests(report, width, p):
        out.append(line)
    return out


def _claim_lines(report: Report, width: int, p: int) -> list[str]:
    """Return the lines on a claimed normalisation (``assume_scale``/``assume_shift``)."""
    out: list[str] = []
    check = report.summary.claimed_normalization
    if check:
        mistakes = ", ".join(check.mistakes) or "none"
        out.extend(
            _kv(
                "Claimed normalisation",
                f"(z - {check.assume_shift:g}) * {check.assume_scale:g} "
                f"gives mean {fmt(check.normalized_mean, p)}, std "
                f"{fmt(check.normalized_std, p)} ({check.verdict}; mistakes: "
                f"{mistakes}); the data needs shift {fmt(check.needed_shift, 4)}, scale "
                f"{fmt(check.needed_scale, 4)}",
                width,
            )
        )
        for message in check.messages:
            out.extend(wrap(message, width, indent=" " * 26, first=" " * 24 + "- "))
    return out


def _joint_tests(report: Report, width: int, p: int) -> list[str]:
    """Return the compact block of multivariate tests and Mahalanobis outliers."""
    jt = report.joint
    out: list[str] = []
    if jt.tests:
        parts = []
        for name, t in jt.tests.items():
            if t.reason:
                parts.append(f"{name} skipped")
            else:
                parts.append(f"{name} {fmt(t.statistic, p)} (p {pval(t.pvalue)})")
        out.extend(_kv("Joint tests", "; ".join(parts), width))
    if jt.mahalanobis:
        maha = jt.mahalanobis
        txt = ", ".join(
            f"beyond chi2 {k} quantile {pct(rate, 2)} (expected "
            f"{pct(maha.expected_rate.get(k), 2)})"
            for k, rate in maha.outlier_rate.items()
        )
        out.extend(_kv("Mahalanobis", txt, width))
    if jt.mcd:
        mcd = jt.mcd
        if mcd.reason:
            out.extend(_kv("Robust (MCD)", f"skipped: {mcd.reason}", width))
        else:
            out.extend(
                _kv(
                    "Robust (MCD)",
                    f"{pct(mcd.outlier_rate, 2)} of the sample beyond the chi2 0.975 "
                    f"quantile (expected {pct(mcd.expected_rate, 2)} for Gaussian rows "
                    "at this size)",
                    width,
                )
            )
    return out


def _dims_table(report: Report, width: int, max_dims: int, p: int) -> list[str]:
    """Return the per-dimension table (all dims, or the top ones by kl_marginal)."""
    dm = report.dims
    d = dm.index.shape[0]
    order = report.top_dims(max_dims)
    note = f"PER DIMENSION (all {d})"
    if d > max_dims:
        note = (
            f"PER DIMENSION ({max_dims} of {d} with the largest kl_marginal; all in --format json)"
        )
    headers, rows, legend, ranks = dim_table(report, "text", order, p)
    # on narrow terminals drop the least essential columns rather than wrap the table
    for drop in sorted(r for r in ranks if r is not None):
        if max(len(line) for line in table(headers, rows)) + 2 <= width:
            break
        k = ranks.index(drop)
        headers, ranks = headers[:k] + headers[k + 1 :], ranks[:k] + ranks[k + 1 :]
        rows = [r[:k] + r[k + 1 :] for r in rows]
    lines = [note]
    lines += ["  " + line for line in table(headers, rows)]
    lines += wrap(legend, width, indent="  ", first="  ")
    return lines


SPATIAL_LEGEND = (
    "lag-1 r: correlation of neighbours within a sample (about the per-position means); "
    "deff: design effect of the channel mean and variance, the variance of their estimates "
    "over that of as many independent rows (Kish; exact, from the per-sample means: above 1 "
    "when a sample's positions move together, below 1 when a fixed spatial pattern makes them "
    "differ); ESS = rows / deff mean. The normalisation intervals are rescaled by it."
)


def spatial_table(report: Report, p: int = 3) -> tuple[list[str], list[list[str]]]:
    """Return the headers and rows of the per-channel spatial table (text and HTML)."""
    sp = report.spatial
    none = np.empty(0)
    rho = none if sp is None or sp.autocorrelation_within is None else sp.autocorrelation_within
    ess = none if sp is None else sp.effective_sample_size
    deff = none if sp is None or sp.design_effect_mean is None else sp.design_effect_mean
    deff_v = none if sp is None or sp.design_effect_var is None else sp.design_effect_var
    axes = ["H", "W", "D"][: len(rho)] if len(rho) <= 3 else [str(i) for i in range(len(rho))]
    headers = ["channel", *[f"lag-1 r ({a})" for a in axes], "deff mean", "deff var", "ESS"]
    rows = [
        [
            str(c),
            *[fmt(rho[a][c], p) for a in range(len(rho))],
            fmt(deff[c], p),
            fmt(deff_v[c], p),
            fmt(ess[c], p),
        ]
        for c in range(len(ess))
    ]
    return headers, rows


def test_rows(report: Report) -> str:
    """Return which rows the headline univariate tests ran on (conv: separated positions)."""
    st = report.settings
    head = None if report.spatial is None else report.spatial.headline_tests
    if head is not None and head.rows == "separated_positions":
        return f"{head.n_rows} rows at well-separated positions (conv latents)"
    return f"{min(st.test_samples, st.sample_rows)} rows"


def separated_summary(report: Report) -> str | None:
    """Return the sentence on the tests at well-separated positions, or None."""
    sp = report.spatial
    sep = None if sp is None else sp.separated_tests
    shapiro = None if sep is None else sep.tests.get("shapiro")
    if sp is None or sep is None or shapiro is None or shapiro.pvalue_holm.size == 0:
        return None
    holm = shapiro.pvalue_holm
    alpha = report.settings.alpha
    n_rej = int(np.sum(holm < alpha))  # NaN (a test not run) is no rejection
    gap = ", ".join(str(g) for g in sp.separation_gap)
    return (
        f"Shapiro-Wilk on {sep.n_rows} rows at {sep.n_positions} well-separated "
        f"positions (gap {gap}): {n_rej} of {len(holm)} channels rejected (Holm, alpha "
        f"{alpha:g})"
    )


def _spatial_block(report: Report, width: int, p: int) -> list[str]:
    """Return the block on conv latents: spatial correlation, ESS, separated tests."""
    sp = report.spatial
    assert sp is not None
    shape = "x".join(str(s) for s in sp.spatial_shape)
    out = [f"SPATIAL (conv latents, {sp.n_items} samples of {shape} positions)"]
    headers, rows = spatial_table(report, p)
    out.extend("  " + line for line in table(headers, rows))
    sentence = separated_summary(report)
    if sentence:
        out.extend(_kv("Separated positions", sentence, width))
    legend = (
        SPATIAL_LEGEND + " Per-position mean, std and outlier maps are in the JSON "
        "(spatial.mean_map, std_map, outlier_rate_map)."
    )
    out.extend(wrap(legend, width, indent="  ", first="  "))
    return out


def bound_text(bounds: Any, p: int = 3, infinite: str = "inf") -> tuple[str, str]:
    """Return a (lower, upper) bound pair as text; a missing upper bound is unbounded."""
    lo, hi = bounds or (None, None)
    hi_text = fmt(hi, p) if hi is not None and math.isfinite(float(hi)) else infinite
    return fmt(lo if lo is None or math.isfinite(float(lo)) else None, p), hi_text


def elbo_surgery_text(post: PosteriorBlock, p: int = 3) -> str:
    """Return the ELBO-surgery sentence of a report's posterior block.

    I(x;z) at the ln n ceiling is a bound (no standard error then), and estimates below 0
    of non-negative quantities are read as 0 with a note.
    """
    est = post.estimator
    n_mix = est.get("n_mixture")
    if post.mi_ceiling() is not None:
        mi = f"I(x;z) >= {fmt(post.mutual_information, p)} (at the ln n ceiling: more rows needed)"
        agg = f"KL(q(z)||p(z)) <= {fmt(post.kl_aggregate, p)}"
    else:
        mi = f"I(x;z) {fmt(post.mutual_information, p)} (+-{fmt(post.mutual_information_se, 2)})"
        agg = f"KL(q(z)||p(z)) {fmt(post.kl_aggregate, p)}"
    parts = []
    for x, name in (
        (post.total_correlation, "total correlation"),
        (post.dimwise_kl, "dimension-wise KL"),
    ):
        if x < 0:
            parts.append(f"{name} 0 (estimate {fmt(x, 2)} < 0: noise, read as 0)")
        else:
            parts.append(f"{name} {fmt(x, p)}")
    return (
        f"rate = {mi} + {agg} nats; KL(q(z)||p(z)) = {parts[0]} + {parts[1]}. Mixture estimate "
        f"over {n_mix} inputs: I(x;z) <= ln {n_mix} = {fmt(est.get('bias_bound_nats'), p)}"
    )


def posterior_rows(post: PosteriorBlock, order: Sequence[int], p: int = 3) -> list[list[str]]:
    """Return the per-dimension posterior table rows (text, Markdown and HTML share them).

    Columns: dim, rate, mean part, var part, share, Var mu, SNR, mean sd.
    """
    return [
        [
            str(j),
            fmt(post.kl_per_dim[j], p) if post.kl_per_dim is not None else "-",
            fmt(post.kl_mean_part[j], p),
            fmt(post.kl_variance_part[j], p),
            pct(post.rate_share[j], 2),
            fmt(post.mu_var[j], p),
            fmt(post.snr[j], p),
            fmt(post.mean_posterior_std[j], p),
        ]
        for j in order
    ]


def _posterior_block(report: Report, width: int, p: int, max_dims: int = 64) -> list[str]:
    """Return the block of posterior-parameter figures and its per-dimension table."""
    post = report.posterior
    if post is None:
        return []
    out = [f"POSTERIOR (from mu and {post.spread_input}; {post.n_samples} rows)"]
    per_sample = ""
    if post.rows_per_sample > 1:
        per_sample = (
            f" (one position; {fmt(post.rate_per_sample_nats, p)} nats per sample of "
            f"{post.rows_per_sample} positions)"
        )
    out.extend(
        _kv(
            "Rate",
            f"{fmt(post.rate_nats, p)} nats = {fmt(post.rate_bits, p)} bits per "
            f"row{per_sample} (mean over inputs of KL(q(z|x) || N(0,I))); mean part (mu^2/2) "
            f"{fmt(post.rate_mean_part_nats, p)}, variance part "
            f"{fmt(post.rate_variance_part_nats, p)} nats",
            width,
        )
    )
    collapsed = post.collapsed_dims
    out.extend(
        _kv(
            "Active units",
            f"{post.active_units} of {report.input.n_dims} (Var_x mu_j > "
            f"{post.active_threshold:g}, Burda et al.); collapsed (rate < "
            f"{post.collapse_threshold:g} nats): "
            + (", ".join(str(i) for i in collapsed) if collapsed else "none"),
            width,
        )
    )
    out.extend(_kv("Posterior std", posterior_std_text(post, p), width))
    if post.has_mutual_information:
        out.extend(_kv("ELBO surgery", elbo_surgery_text(post, p), width))
        regime = post.mutual_information_regime
        if regime in ("biased", "saturated"):
            mi_lo, mi_hi = bound_text(post.mixture_bounds.get("mutual_information"), p)
            tc_lo, tc_hi = bound_text(post.mixture_bounds.get("total_correlation"), p)
            out.extend(
                _kv(
                    "ELBO surgery bias",
                    f"{regime}: the mixture estimate is biased low near ln n, so I(x;z) lies "
                    f"between {mi_lo} and {mi_hi} and total correlation between {tc_lo} and "
                    f"{tc_hi} (leave-one-out bounds); "
                    "a standard error above is Monte-Carlo error only",
                    width,
                )
            )
    d = report.input.n_dims
    if d <= max_dims and post.kl_per_dim is not None:
        headers = ["dim", "rate", "mean part", "var part", "share", "Var mu", "SNR", "mean sd"]
        out.extend("  " + line for line in table(headers, posterior_rows(post, range(d), p)))
        out.extend(
            wrap(
                "rate = mean part + var part (nats): what the KL term pays per dimension, "
                "for moving means (mu^2/2) and for shrinking variances; share: of the total "
                "rate; Var mu = Var_x E[z_j|x]; SNR = Var mu / E[sigma^2].",
                width,
                indent="  ",
                first="  ",
            )
        )
    return out


def posterior_std_text(post: PosteriorBlock, p: int = 3, logvar: str = "logvar") -> str:
    """Return the posterior-std sentence: quantiles over all dims, the smallest logvar."""
    q = post.posterior_std_quantiles_all
    text = f"median {fmt(q.get('0.5'), p)}, 1% {fmt(q.get('0.01'), p)}, 99% {fmt(q.get('0.99'), p)}"
    j = post.lowest_logvar_dim()
    if j is not None:
        text += (
            f"; smallest {logvar} {fmt(post.logvar_min[j], p)} (dim {j}, "
            f"{pct(post.share_at_min[j] if j < post.share_at_min.size else None, 2)} of rows "
            "at that minimum)"
        )
    return text


@register("report", "text")
def _render_text(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) the full text report."""
    return render_report(
        report, width=options.width, max_dims=options.max_dims, precision=options.precision
    )


@register("report", "verdict")
def _render_verdict(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) the verdict alone (``latentcheck report -q``)."""
    return render_verdict(report, width=options.width)


@register("report", "summary")
def _render_summary(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) what was read and the verdict (``str(report)``)."""
    return render_summary(report)
