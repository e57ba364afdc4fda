"""HTML rendering of a report: one self-contained page with tables and plots.

The page holds the verdict, the summary, the marginal plots, the per-dimension table, the
joint block, the posterior and spatial blocks when present, the notes and the settings.
The joint, posterior and spatial sections are in :mod:`latentcheck.render.htmlblocks`, the
escaping helpers in :mod:`latentcheck.render.htmlparts`. The plots come from
:mod:`latentcheck.render.htmlplots` (matplotlib, the optional ``plots`` extra) as inline
PNG, so the file needs no network, no JavaScript and no other file. This module reads the
report and writes HTML; numbers are formatted as the text report formats them, and every
text is escaped.
"""

from __future__ import annotations

import html

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..model.report import Finding, Report, level_key
from .dimtable import dim_table
from .htmlblocks import joint_section, posterior_section, spatial_section
from .htmlparts import esc, html_table, kv_table, para, section
from .htmlplots import histograms, kl_bars, plot_style, qq
from .registry import RenderOptions, register
from .textreport import (
    fmt,
    pct,
    test_rows,
)

__all__ = ["render_report", "require_matplotlib"]

MISSING_MATPLOTLIB = "HTML output needs matplotlib: pip install 'latentcheck[plots]'"
MARK = {"ok": "ok", "note": "note", "warn": "WARN"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
max-width:1100px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.8em}h3{font-size:1em;margin-top:1.2em}
code{font-size:.95em;background:#f3f3f3;padding:0 .25em;border-radius:3px}
.meta{color:#555;margin:.2em 0}
ul.findings{list-style:none;padding:0}ul.findings li{margin:.35em 0;padding:.35em .6em;
border-left:4px solid #999;background:#fafafa}
li.ok{border-left-color:#2e7d32!important}li.note{border-left-color:#1565c0!important}
li.warn{border-left-color:#c62828!important;background:#fff5f5!important}
.status{display:inline-block;min-width:3.2em;font-weight:600;font-size:.85em}
li.ok .status{color:#2e7d32}li.note .status{color:#1565c0}li.warn .status{color:#c62828}
.tag{color:#555;font-size:.85em;margin-left:.4em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{padding:.2em .6em;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f5f5f5;text-align:right}th:first-child,td:first-child{text-align:left}
td{text-align:right;font-variant-numeric:tabular-nums}
table.kv td{text-align:left}table.kv td:first-child{color:#444;white-space:nowrap}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.88em;margin-top:.3em}
.skip{color:#8a6d3b}footer{margin-top:2em;color:#666;font-size:.85em}
"""


def require_matplotlib() -> None:
    """Raise InputError unless matplotlib can be imported (checked before any analysis)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(MISSING_MATPLOTLIB) from None


def render_report(report: Report, *, max_dims: int = 64, dpi: int = 90) -> str:
    """Return the report as one self-contained HTML page with plots.

    Parameters
    ----------
    report : Report
    max_dims : int, default=64
        Plot and tabulate at most this many dimensions: those with the largest
        ``kl_marginal`` (the page says so when there are more).
    dpi : int, default=90
        Resolution of the embedded PNG plots.

    Returns
    -------
    str
        An HTML5 document with inline CSS and the plots as ``data:`` PNG images: no
        external resource and no JavaScript.

    Raises
    ------
    InputError
        If matplotlib is not installed, or `max_dims` or `dpi` is below 1.

    Notes
    -----
    The histograms show ``dims.histogram`` as densities per unit standard deviation,
    count / (n · 0.25) over the bins of ``HISTOGRAM_EDGES``, with n including the under-
    and overflow bins (stated in each panel when not empty), against the N(0, 1) density
    φ(x) = exp(−x²/2)/√(2π). The Q-Q plot shows (q_p − mean)/std against Φ⁻¹(p) at
    ``settings.quantile_levels``.
    """
    if max_dims < 1:
        raise InputError(f"`max_dims` must be at least 1, got {max_dims}")
    if dpi < 1:
        raise InputError(f"`dpi` must be at least 1, got {dpi}")
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise InputError(MISSING_MATPLOTLIB) from None

    order, shown_note = _shown_dims(report, max_dims)
    with plot_style():
        parts = [
            _head(report),
            _verdict(report),
            _summary(report),
            _marginals(report, order, shown_note, dpi),
            _dims_section(report, order, shown_note, dpi),
            joint_section(report, dpi),
        ]
        if report.posterior:
            parts.append(posterior_section(report, order))
        if report.spatial:
            parts.append(spatial_section(report, order, dpi))
    parts += [_notes(report), _settings(report), _foot(report)]
    return "\n".join(p for p in parts if p) + "\n</body>\n</html>\n"


def _shown_dims(report: Report, max_dims: int) -> tuple[NDArray[np.intp], str | None]:
    """Return the positions of the dims to show and a note when some are left out."""
    d = report.dims.index.shape[0]
    order = report.top_dims(max_dims)
    if d <= max_dims:
        return order, None
    return order, (
        f"{max_dims} of {d} dimensions shown: those with the largest kl_marginal "
        "(all of them are in --format json)."
    )


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------


def _head(report: Report) -> str:
    """Return the document head and the page title block."""
    inp, st = report.input, report.settings
    sources = ", ".join(inp.sources)
    rows = f"{inp.n_samples} rows used"
    if inp.non_finite_rows:
        rows += f" ({inp.non_finite_rows} rows with NaN/inf left out)"
    rows += f"; analysed: {inp.aggregate}; seed {st.seed}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>latentcheck report: {esc(sources)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>latentcheck report: <code>{esc(sources)}</code></h1>",
            para(f"{inp.layout}; dtype {inp.dtype}", "meta"),
            para(rows, "meta"),
        ]
    )


#: dimensions of a finding listed beside it on the page (all of them are in the JSON)
FINDING_DIMS_SHOWN = 20


def _finding_tag(f: Finding) -> str:
    """Return a finding's code and dims beside its text (the text report's ``[code]``)."""
    parts = [f"<code>{esc(f.code)}</code>"] if f.code else []
    if f.dims:
        shown = ", ".join(str(d) for d in f.dims[:FINDING_DIMS_SHOWN])
        more = len(f.dims) - FINDING_DIMS_SHOWN
        if more > 0:
            shown += f" and {more} more"
        parts.append(f"dim{'s' if len(f.dims) > 1 else ''} {shown}")
    return f' <span class="tag">{" ".join(parts)}</span>' if parts else ""


def _verdict(report: Report) -> str:
    """Return the verdict: one finding per aspect with its status, code and dims."""
    items = [
        f'<li class="{esc(f.status)}"><span class="status">{esc(MARK.get(f.status, f.status))}'
        f"</span> {esc(f.text)}{_finding_tag(f)}</li>"
        for f in report.summary.findings
    ]
    body = '<ul class="findings">\n' + "\n".join(items) + "\n</ul>" if items else ""
    return section("verdict", "Verdict", [body or para(report.summary.verdict)])


def _summary(report: Report) -> str:
    """Return the headline figures, the outlier table and the normalisation."""
    inp, st, sm, dm, jt = report.input, report.settings, report.summary, report.dims, report.joint
    rows = [
        (
            "KL to N(0,1)",
            f"sum over dims of kl_gauss {fmt(sm.kl_gauss_sum)} + negentropy "
            f"{fmt(sm.negentropy_sum)} = kl_marginal {fmt(sm.kl_marginal_sum)} nats",
        )
    ]
    if jt.skipped is None:
        rows.append(
            (
                "Joint Gaussian fit",
                f"KL(N(m,S) ‖ N(0,I)) {fmt(jt.kl_gauss)} nats = sum kl_gauss "
                f"{fmt(jt.kl_gauss_dims)} + total correlation {fmt(jt.total_correlation)}",
            )
        )
        rows.append(
            (
                "Dimensions",
                f"effective {fmt(jt.effective_dims)} of {inp.n_dims} (participation ratio); "
                f"condition number {fmt(jt.condition_number)}",
            )
        )
    else:
        rows.append(("Joint", f"skipped: {jt.skipped}"))
    nz = sm.normalization
    rows.append(
        (
            "Normalisation",
            f"(z − shift) · scale with shift {fmt(nz.shift, 4)} [95% CI "
            f"{fmt(nz.shift_ci[0], 4)}, {fmt(nz.shift_ci[1], 4)}], scale {fmt(nz.scale, 4)} "
            f"[{fmt(nz.scale_ci[0], 4)}, {fmt(nz.scale_ci[1], 4)}]; per dim: (z − mean) / std "
            "from the table",
        )
    )
    rej = ", ".join(f"{name} {count}" for name, count in sm.dims_rejected.items())
    tested = int(np.isfinite(dm.tests["shapiro"].pvalue).sum()) if "shapiro" in dm.tests else 0
    rows.append(
        (
            "Normality tests",
            f"dims rejected at alpha {st.alpha:g} after Holm, of {tested} tested on "
            f"{test_rows(report)}: {rej or 'none run'}",
        )
    )
    check = sm.claimed_normalization
    if check:
        mistakes = ", ".join(check.mistakes) or "none"
        text = (
            f"(z − {fmt(check.assume_shift, 4)}) · {fmt(check.assume_scale, 4)} "
            f"gives mean {fmt(check.normalized_mean)}, std "
            f"{fmt(check.normalized_std)} ({check.verdict}; mistakes: "
            f"{mistakes}); the data needs shift {fmt(check.needed_shift, 4)}, scale "
            f"{fmt(check.needed_scale, 4)}"
        )
        for message in check.messages:
            text += f". {message}"
        rows.append(("Claimed normalisation", text))
    out = [kv_table(rows), "<h3>Outliers</h3>"]
    keys = list(sm.outlier_rate)
    out.append(
        html_table(
            [
                "k",
                "beyond k std of the dim mean",
                "× Gaussian",
                "Gaussian 2Φ(−k)",
                "|z| > k (prior)",
            ],
            [
                [
                    k,
                    pct(sm.outlier_rate[k], 2),
                    fmt(sm.outlier_ratio.get(k), 2),
                    pct(sm.expected_outlier_rate.get(k), 2),
                    pct(sm.prior_outlier_rate.get(k), 2),
                ]
                for k in keys
            ],
        )
    )
    out.append(para("Shares of all values, pooled over dimensions.", "caption"))
    return section("summary", "Summary", out)


def _marginals(report: Report, order: NDArray[np.intp], note: str | None, dpi: int) -> str:
    """Return the histogram grid and the Q-Q plot."""
    out = [para(note, "caption")] if note else []
    out.append(histograms(report, order, dpi))
    out.append(qq(report, order, dpi))
    return section("marginals", "Marginals against N(0,1)", out)


def _dims_section(report: Report, order: NDArray[np.intp], note: str | None, dpi: int) -> str:
    """Return the KL bar chart and the per-dimension table."""
    out = [para(note, "caption")] if note else []
    out.append(kl_bars(report, order, dpi))
    headers, rows, legend, _ = dim_table(report, "html", order)
    out.append(html_table(headers, rows))
    out.append(para(legend, "caption"))
    return section("dims", "Per dimension", out)


def _notes(report: Report) -> str:
    """Return the notes and warnings."""
    inp = report.input
    notes = list(inp.notes) + [w for w in report.warnings if w not in inp.notes]
    if not notes:
        return ""
    items = "\n".join(f"<li>{esc(n)}</li>" for n in notes)
    return section("notes", "Notes and warnings", [f"<ul>\n{items}\n</ul>"])


def _settings(report: Report) -> str:
    """Return the settings the report was computed with."""
    st = report.settings
    rows = [
        ("Seed", str(st.seed)),
        ("Univariate tests on", f"at most {st.test_samples} rows"),
        (
            "Seeded sample",
            f"{st.sample_rows} rows (capacity {st.sample_size}); quantiles "
            + ("exact" if st.quantiles_exact else "from the sample"),
        ),
        ("Alpha", f"{st.alpha:g}"),
        ("Non-finite rows", st.nan_policy),
        ("k of the k-σ rates", ", ".join(level_key(k) for k in st.sigma_levels)),
        ("Quantile levels", ", ".join(level_key(q) for q in st.quantile_levels)),
        ("Negentropy estimator", st.entropy_estimator),
    ]
    return section("settings", "Settings", [kv_table(rows)])


def _foot(report: Report) -> str:
    """Return the footer: units and provenance."""
    tool = report.tool
    return (
        "<footer>\n"
        + para(
            "Units: KL and negentropy in nats; rates are fractions of values shown as %; std "
            "in the data's units; σ = one standard deviation of the dimension. Definitions: "
            "README, section 'What the figures mean'."
        )
        + "\n"
        + para(
            f"{tool.get('name', 'latentcheck')} {tool.get('version', '')}, schema "
            f"{report.schema_version}, created {report.created_at}"
        )
        + "\n</footer>"
    )


def render_notebook(report: Report) -> str:
    """Return the verdict as a small HTML block for notebooks (no plots, no matplotlib)."""
    inp = report.input
    icon = {"ok": "&#9989;", "note": "&#8505;&#65039;", "warn": "&#9888;&#65039;"}
    items = "".join(
        f"<li>{icon.get(f.status, '')} {html.escape(f.text)}"
        + (f" <code>{html.escape(f.code)}</code>" if f.code else "")
        + "</li>"
        for f in report.summary.findings
    )
    return (
        f"<div><b>latentcheck report</b>: <code>{html.escape(', '.join(inp.sources))}</code>"
        f" ({inp.n_samples} rows &times; {inp.n_dims} dims)<ul>{items}</ul></div>"
    )


@register("report", "html")
def _render_html(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) the self-contained HTML page."""
    return render_report(report, max_dims=options.max_dims)


@register("report", "notebook")
def _render_notebook(report: Report, options: RenderOptions) -> str:
    """Return (as the registered renderer) the notebook block (``Report._repr_html_``)."""
    return render_notebook(report)
