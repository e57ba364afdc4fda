"""Markdown rendering of a report, for pull-request comments and notebooks."""

from __future__ import annotations

import re

from ..model.report import Report
from .dimtable import dim_table
from .registry import RenderOptions, register
from .textreport import (
    SPATIAL_LEGEND,
    elbo_surgery_text,
    fmt,
    pct,
    posterior_rows,
    pval,
    spatial_table,
)

__all__ = ["md_code", "md_table", "render_report"]

ICON = {"ok": "✅", "note": "ℹ️", "warn": "⚠️"}


def md_code(text: str) -> str:
    """Return `text` as a Markdown code span that no backtick or newline in it can break.

    CommonMark: a span opened by n backticks ends at the next run of exactly n, so the
    fence is one longer than the longest run inside (issue 20: hostile file names).
    """
    text = text.replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Return a GitHub-flavoured Markdown table (numbers right-aligned)."""
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_report(report: Report, *, max_dims: int = 64) -> str:
    """Return the report as Markdown: verdict, summary table, per-dimension table."""
    inp, st, sm, dm, jt = report.input, report.settings, report.summary, report.dims, report.joint
    out = [f"### latentcheck report: {md_code(', '.join(inp.sources))}", ""]
    out.append(f"{inp.layout}; {inp.n_samples} rows used; seed {st.seed}.")
    out.append("")
    for f in sm.findings:
        code = f" `{f.code}`" if f.code else ""
        out.append(f"- {ICON.get(f.status, '')} {f.text}{code}")
    out.append("")
    keys = list(sm.outlier_rate)
    rows = [
        ["Σ kl_gauss (nats)", fmt(sm.kl_gauss_sum)],
        ["Σ negentropy (nats)", fmt(sm.negentropy_sum)],
        ["Σ kl_marginal (nats)", fmt(sm.kl_marginal_sum)],
        ["joint Gaussian KL (nats)", fmt(jt.kl_gauss)],
        ["total correlation (nats)", fmt(jt.total_correlation)],
        ["effective dims", f"{fmt(jt.effective_dims)} of {inp.n_dims}"],
    ]
    for k in keys:
        rows.append(
            [
                f"values beyond {k} std",
                f"{pct(sm.outlier_rate[k], 2)} ({fmt(sm.outlier_ratio[k], 2)}× Gaussian)",
            ]
        )
    nz = sm.normalization
    rows.append(["shift, scale: (z − shift)·scale", f"{fmt(nz.shift, 4)}, {fmt(nz.scale, 4)}"])
    out += md_table(["figure", "value"], rows)
    if jt.tests:
        out.append("")
        out += md_table(
            ["joint test", "statistic", "p-value"],
            [[n, fmt(t.statistic), pval(t.pvalue)] for n, t in jt.tests.items()],
        )
    out.append("")
    d = dm.index.shape[0]
    order = report.top_dims(max_dims)
    if d > max_dims:
        out.append(f"{max_dims} of {d} dimensions shown (largest kl_marginal).")
        out.append("")
    headers, rows, _, _ = dim_table(report, "markdown", order)
    out += md_table(headers, rows)
    out.append("")
    out += _posterior_section(report, max_dims)
    out += _spatial_section(report)
    return "\n".join(out)


def _posterior_section(report: Report, max_dims: int) -> list[str]:
    """Return the posterior figures (rate, active and collapsed units, ELBO surgery)."""
    post = report.posterior
    if post is None:
        return []
    out = [f"#### Posterior (from mu and {post.spread_input})", ""]
    collapsed = post.collapsed_dims
    rows = [
        ["rate (nats per row)", fmt(post.rate_nats)],
        ["  mean part, variance part", f"{fmt(post.rate_mean_part_nats)}, "
         f"{fmt(post.rate_variance_part_nats)}"],
        ["active units", f"{post.active_units} of {report.input.n_dims}"],
        ["collapsed dims", ", ".join(map(str, collapsed)) or "none"],
    ]  # fmt: skip
    out += md_table(["figure", "value"], rows)
    if post.has_mutual_information:
        out += ["", "ELBO surgery: " + elbo_surgery_text(post) + "."]
    d = report.input.n_dims
    if d <= max_dims and post.kl_per_dim is not None:
        out.append("")
        out += md_table(
            ["dim", "rate", "mean part", "var part", "share", "Var mu", "SNR"],
            [row[:-1] for row in posterior_rows(post, range(d))],
        )
    out.append("")
    return out


def _spatial_section(report: Report) -> list[str]:
    """Return the conv-latent section: per-channel spatial correlation, design effects, ESS."""
    sp = report.spatial
    if not sp:
        return []
    shape = "×".join(str(s) for s in sp.spatial_shape)
    out = [f"#### Spatial (conv latents, {sp.n_items} samples of {shape} positions)", ""]
    headers, rows = spatial_table(report)
    out += md_table(headers, rows)
    out += ["", SPATIAL_LEGEND, ""]
    return out


@register("report", "markdown")
def _render_markdown(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) the Markdown report."""
    return render_report(report, max_dims=options.max_dims)
