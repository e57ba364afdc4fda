"""Text and Markdown rendering of a :class:`~latentcheck.comparison.api.Comparison`.

Verdict first, then the side-by-side summary (one column per input, delta columns against
the baseline), the per-dimension table of each comparison (moved dimensions, or all when
few), the sorted profiles, and notes saying which comparisons assume that dimensions
correspond. Text fits the requested width. This module formats; it computes nothing but
the order of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .markdownreport import ICON, md_code, md_table
from .registry import RenderOptions, register
from .textreport import MARK, fmt, pct, pval, table, wrap

if TYPE_CHECKING:
    from ..model.comparison import Comparison, PairComparison

__all__ = ["render_markdown", "render_text"]

#: Dimensions up to which the per-dimension table shows every dimension.
ALL_DIMS_UP_TO = 16
#: (label, figure key, sub-key or None, kind); kinds: "int", "num", "pct".
FIGURE_ROWS: tuple[tuple[str, str, str | None, str], ...] = (
    ("rows", "n_samples", None, "int"),
    ("dimensions", "n_dims", None, "int"),
    ("total KL (nats)", "kl_total", None, "num"),
    ("marginal KL, sum (nats)", "kl_marginal_sum", None, "num"),
    ("  moment-matched part", "kl_gauss_sum", None, "num"),
    ("  non-Gaussian part", "negentropy_sum", None, "num"),
    ("total correlation (nats)", "total_correlation", None, "num"),
    ("joint Gaussian KL (nats)", "kl_joint_gauss", None, "num"),
    ("effective dims", "effective_dims", None, "num"),
    ("condition number", "condition_number", None, "num"),
    ("std, smallest", "std_min", None, "num"),
    ("std, largest", "std_max", None, "num"),
    ("values beyond {k} std", "outlier_rate", "*", "pct"),
    ("values with |z| > {k}", "prior_outlier_rate", "*", "pct"),
    ("Mahalanobis > chi2 {k}", "mahalanobis_outlier_rate", "*", "pct"),
    ("shift (global mean)", "shift", None, "num"),
    ("scale (1 / global std)", "scale", None, "num"),
    ("scale_rms", "scale_rms", None, "num"),
    ("rate (nats)", "rate_nats", None, "num"),
    ("rate (bits)", "rate_bits", None, "num"),
    ("active units", "active_units", None, "int"),
)
#: (profile key, title, formatter)
PROFILES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("kl_marginal", "kl_marginal per dim (nats)", lambda x: fmt(x, 3)),
    ("rate", "rate per dim (posterior KL, nats)", lambda x: fmt(x, 3)),
    ("eigenvalue_share", "covariance eigenvalue / total", lambda x: pct(x, 2)),
    ("std", "std per dim", lambda x: fmt(x, 3)),
    ("excess_kurtosis", "excess kurtosis per dim", lambda x: fmt(x, 2)),
    ("outlier_ratio", "outlier rate over the Gaussian rate, beyond {k} std", lambda x: fmt(x, 2)),
)
EFFECT_LETTERS = {"shift": "S", "scale": "V", "distribution": "W", "kl": "K"}
LEGEND = (
    "shift: (mean - mean of A) / pooled std; std x: std / std of A; d kl: change of kl_marginal "
    "(nats); d exkurt: of the excess kurtosis; d >ksd: of the share of values beyond k std; "
    "d rate: of the posterior rate (nats); W1/sd: Wasserstein-1 / pooled std; KS D: "
    "Kolmogorov-Smirnov statistic; z mean, z std: z-tests from the moments (when a saved "
    "report has no rows); p_adj: corrected p-value of the test; effect: the effect sizes past "
    "their thresholds (S shift, V std, W W1, K kl); moved: test and effect both."
)


def _signed(x: Any, kind: str = "num", precision: int = 3) -> str:
    """Return a delta with its sign ('-' for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return fmt(x)
    x = float(x)
    text = pct(x, 2) if kind == "pct" else str(int(x)) if kind == "int" else fmt(x, precision)
    return ("+" + text) if x > 0 else text


def _value(x: Any, kind: str) -> str:
    """Return a figure formatted by its kind."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if kind == "int":
        return str(int(x))
    return pct(x, 3) if kind == "pct" else fmt(x, 4)


def _figure_rows(cmp: Comparison) -> list[tuple[str, list[Any], list[Any], str]]:
    """Return (label, values per input, deltas per comparison, kind), skipping empty rows."""
    inputs = [cmp.baseline, *(c.input for c in cmp.comparisons)]
    rows = []
    for label, key, sub, kind in FIGURE_ROWS:
        subs: Sequence[str | None] = [None]
        if sub == "*":
            subs = list(dict.fromkeys(k for s in inputs for k in s.figures[key]))
        for k in subs:
            vals = [s.figures[key] if k is None else s.figures[key].get(k) for s in inputs]
            if all(x is None or (isinstance(x, float) and math.isnan(x)) for x in vals):
                continue
            deltas = []
            for c in cmp.comparisons:
                d = c.summary_deltas[key] if k is None else c.summary_deltas[key][k]
                deltas.append(d["delta"])
            rows.append((label.format(k=k), vals, deltas, kind))
    return rows


def _dims_rows(c: PairComparison, max_dims: int) -> tuple[list[int], str]:
    """Return the dimensions to list for one comparison and the heading that says which."""
    dc = c.dims
    assert dc is not None
    d = dc.index.size
    if d <= ALL_DIMS_UP_TO:
        return list(range(d)), f"all {d}"
    moved = np.flatnonzero(dc.moved)
    if moved.size == 0:
        p = _pvalues(c)
        order = np.argsort(np.where(np.isfinite(p), p, np.inf), kind="stable")[:5]
        return sorted(int(i) for i in order), "none moved; the 5 with the smallest p_adj"
    if moved.size > max_dims:
        size = np.where(np.isfinite(dc.wasserstein_std), dc.wasserstein_std, np.abs(dc.shift))
        keep = moved[np.argsort(-size[moved], kind="stable")[:max_dims]]
        return sorted(int(i) for i in keep), f"{max_dims} of {moved.size} moved, largest first"
    return [int(i) for i in moved], f"the {moved.size} moved"


def _pvalues(c: PairComparison) -> Any:
    """Return the adjusted p-value behind each dimension's test flag."""
    dc = c.dims
    assert dc is not None
    if c.test == "ks":
        if dc.scale_test is not None:  # KS or the Brown-Forsythe scale test (issue 15)
            return np.fmin(dc.ks.pvalue_adjusted, dc.scale_test.pvalue_adjusted)
        return dc.ks.pvalue_adjusted
    return np.fmin(dc.mean_test.pvalue_adjusted, dc.std_test.pvalue_adjusted)


def _dims_table(
    c: PairComparison, cmp: Comparison, max_dims: int
) -> tuple[list[str], list[list[str]], str]:
    """Return (headers, rows, which dimensions) of the per-dimension table of a comparison."""
    dc = c.dims
    assert dc is not None
    levels = list(cmp.baseline.figures["outlier_rate"])
    level = cmp.settings["profile_sigma_level"]
    li = levels.index(level) if level in levels else 0
    idx, which = _dims_rows(c, max_dims)
    has_rate = "rate" in dc.baseline
    headers = ["dim", "shift", "std x", "d kl", "d exkurt", f"d >{levels[li]}sd"]
    headers += ["d rate"] if has_rate else []
    headers += ["W1/sd", "KS D"] if c.test == "ks" else ["z mean", "z std"]
    headers += ["p_adj", "effect", "moved"]
    p = _pvalues(c)
    rows = []
    for j in idx:
        b, v = dc.baseline, dc.value
        cells = [
            str(j),
            _signed(dc.shift[j], precision=2),
            fmt(math.exp(dc.log_std_ratio[j]), 3),
            _signed(v["kl_marginal"][j] - b["kl_marginal"][j], precision=2),
            _signed(v["excess_kurtosis"][j] - b["excess_kurtosis"][j], precision=2),
            _signed(v["outlier_rate"][li, j] - b["outlier_rate"][li, j], "pct"),
        ]
        if has_rate:
            cells.append(_signed(v["rate"][j] - b["rate"][j], precision=2))
        if c.test == "ks":
            cells += [fmt(dc.wasserstein_std[j], 2), fmt(dc.ks.statistic[j], 2)]
        else:
            z = (dc.mean_test.statistic[j], dc.std_test.statistic[j])
            cells += [_signed(z[0], precision=2), _signed(z[1], precision=2)]
        effect = "".join(EFFECT_LETTERS[r] for r in dc.effect_reasons[j])
        cells += [pval(p[j]), effect or ".", "yes" if dc.moved[j] else ""]
        rows.append(cells)
    return headers, rows, which


def _fit(headers: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Return the table, dropping the least essential columns until it fits `width`."""
    for name in ("d exkurt", "d rate", "effect", "d kl", "KS D", "z std"):
        lines = table(headers, rows, "r" * len(headers))
        if max(len(line) for line in lines) <= width or name not in headers:
            if max(len(line) for line in lines) <= width:
                return lines
            continue
        k = headers.index(name)
        headers = headers[:k] + headers[k + 1 :]
        rows = [r[:k] + r[k + 1 :] for r in rows]
    return table(headers, rows, "r" * len(headers))


def _ranks(d: int, n_cols: int) -> list[int]:
    """Return up to `n_cols` ranks 1..d, denser at the top (always 1 and d)."""
    cand = [1, 2, 3, 4, 6, 8, 12, 16]
    while cand[-1] < d:
        cand += [cand[-2] * 2, cand[-1] * 2]
    ranks = sorted({r for r in cand if r < d} | {d})
    while len(ranks) > max(n_cols, 2):
        ranks.pop(len(ranks) // 2)
    return ranks


def _profile_tables(cmp: Comparison, n_cols: int) -> list[tuple[str, list[str], list[list[str]]]]:
    """Return (title, headers, rows) of each sorted profile that some input has."""
    inputs = [cmp.baseline, *(c.input for c in cmp.comparisons)]
    out = []
    for key, title, f in PROFILES:
        prof = [s.profiles[key] for s in inputs]
        d = max(p.size for p in prof)
        if d == 0:
            continue
        ranks = _ranks(d, n_cols)
        headers = ["rank", *(str(r) for r in ranks), "mean|d|"]
        rows = []
        for s, p, c in zip(inputs, prof, [None, *cmp.comparisons], strict=True):
            cells = [s.label] + [f(p[r - 1]) if r <= p.size else "" for r in ranks]
            cells.append("" if c is None else fmt(c.profiles[key]["mean_abs_diff"], 2))
            rows.append(cells)
        out.append((title.format(k=cmp.settings["profile_sigma_level"]), headers, rows))
    return out


def _header(cmp: Comparison, width: int) -> list[str]:
    """Return the title, the inputs and the settings."""
    st = cmp.settings
    out = wrap(
        f"latentcheck {cmp.tool.get('version', '')} compare: {1 + len(cmp.comparisons)} "
        "inputs, baseline A",
        width,
    )
    for s in [cmp.baseline, *(c.input for c in cmp.comparisons)]:
        out += wrap(", ".join(s.sources), width, indent="     ", first=f"  {s.label}  ")
        rows = "no rows (saved report)" if s.rows_at_hand == 0 else f"{s.rows_at_hand} rows kept"
        out += wrap(
            f"{s.n_samples} rows x {s.n_dims} dims; {s.kind}; {s.origin}, {rows}",
            width,
            indent="     ",
            first="     ",
        )
    if st.get("relation_note"):
        out += wrap(st["relation_note"], width, indent="  ", first="  ")
    corr = "Holm" if st["correction"] == "holm" else "Benjamini-Hochberg"
    out += wrap(
        f"seed {st['seed']}; alpha {st['alpha']:g}, {corr} across dimensions; KS and W1 on "
        f"<= {st['test_samples']} rows per input; energy test on <= "
        f"{st['joint_test_samples']} rows, {st['n_permutations']} permutations",
        width,
        indent="  ",
        first="  ",
    )
    return out


def render_text(cmp: Comparison, *, width: int = 100, max_dims: int = 64) -> str:
    """Return the comparison as text that fits `width` columns."""
    out = [*_header(cmp, width), "", "VERDICT"]
    for c in cmp.comparisons:
        state = "CHANGED" if c.changed else "no change found"
        out.append(f"  {c.input.label} vs A: {state}")
        for f in c.findings:
            mark = MARK.get(f.status, f.status)
            out += wrap(f.text, width, indent=" " * 11, first=f"    {mark}   ")
    out += ["", "SUMMARY (values; deltas against the baseline A)"]
    out += _summary_text(cmp, width)
    for c in cmp.comparisons:
        out += ["", f"PER DIMENSION, {c.input.label} vs A"]
        if c.dims is None:
            out += wrap(c.dims_note, width, indent="  ", first="  ")
            continue
        headers, rows, which = _dims_table(c, cmp, max_dims)
        out[-1] += f" ({which})"
        out += ["  " + line for line in _fit(headers, rows, width - 2)]
    if any(c.dims is not None for c in cmp.comparisons):
        out += wrap(LEGEND, width, indent="  ", first="  ")
    out += ["", "SORTED PROFILES (largest first; no correspondence between dimensions assumed)"]
    n_cols = max(2, (width - 18) // 8)
    tables = _profile_tables(cmp, n_cols)
    while n_cols > 2 and any(len(ln) + 4 > width for t in tables for ln in table(*t[1:])):
        n_cols -= 1
        tables = _profile_tables(cmp, n_cols)
    for title, headers, rows in tables:
        out.append("  " + title)
        out += ["    " + line for line in table(headers, rows)]
    out += ["", "NOTES"]
    for note in _notes(cmp):
        out += wrap(note, width, indent="    ", first="  - ")
    return "\n".join(line.rstrip() for line in out) + "\n"


def _summary_text(cmp: Comparison, width: int) -> list[str]:
    """Return the side-by-side summary, split into several tables if too wide."""
    rows = _figure_rows(cmp)
    labels = [c.input.label for c in cmp.comparisons]
    k = len(labels)
    for group in range(k, 0, -1):
        lines: list[str] = []
        for start in range(0, k, group):
            sel = list(range(start, min(start + group, k)))
            headers = ["figure", "A", *(labels[i] for i in sel), *(f"{labels[i]}-A" for i in sel)]
            cells = [
                [lab, _value(vals[0], kind)]
                + [_value(vals[i + 1], kind) for i in sel]
                + [_signed(deltas[i], kind) for i in sel]
                for lab, vals, deltas, kind in rows
            ]
            lines += (["  " + line for line in table(headers, cells)]) + [""]
        if max(len(line) for line in lines) <= width or group == 1:
            return lines[:-1]
    return []


def _notes(cmp: Comparison) -> list[str]:
    """Return the notes: what assumes correspondence, the flag rule, notes and warnings."""
    th = cmp.settings["thresholds"]
    out = [
        "Summary figures, the global shift and scale tests and the sorted profiles do not "
        "assume that dimensions correspond. The per-dimension table and the joint energy test "
        "do: they pair dimension i of each input with dimension i of the baseline.",
        "A dimension moved when its corrected test (KS on the rows; mean/std z-tests when a "
        "saved report has no rows) rejects AND an effect size passes its threshold: "
        f"S |shift| >= {th['shift']:g} pooled std, V |ln std ratio| >= {th['log_std_ratio']:g}, "
        f"W W1 >= {th['wasserstein']:g} pooled std, K |d kl_marginal| >= {th['kl_marginal']:g} "
        "nats. Tests alone flag trivial changes in large samples; effect sizes alone flag "
        "noise in small ones.",
    ]
    for c in cmp.comparisons:
        if c.dims is None:  # the pairing by index, said once above, is not repeated per pair
            out.append(f"{c.input.label} vs A: {c.dims_note}")
        out += [f"{c.input.label} vs A: {n}" for n in c.notes]
    out += list(cmp.warnings)
    return out


def _md(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Return a Markdown table with the pipes inside cells escaped."""

    def esc(cells: list[str]) -> list[str]:
        return [c.replace("|", "\\|") for c in cells]

    return md_table(esc(headers), [esc(r) for r in rows])


def render_markdown(cmp: Comparison, *, max_dims: int = 64) -> str:
    """Return the comparison as GitHub-flavoured Markdown."""
    out = ["### latentcheck compare", ""]
    for s in [cmp.baseline, *(c.input for c in cmp.comparisons)]:
        out.append(
            f"- **{s.label}** {md_code(', '.join(s.sources))}: {s.n_samples} rows × {s.n_dims} dims"
        )
    out.append("")
    if cmp.settings.get("relation_note"):
        out += [str(cmp.settings["relation_note"]), ""]
    for c in cmp.comparisons:
        out.append(f"**{c.input.label} vs A: {'changed' if c.changed else 'no change found'}**")
        out.append("")
        out += [f"- {ICON.get(f.status, '')} {f.text}" for f in c.findings]
        out.append("")
    labels = [c.input.label for c in cmp.comparisons]
    out += _md(
        ["figure", "A", *labels, *(f"{b} − A" for b in labels)],
        [
            [lab.strip(), *(_value(x, kind) for x in vals), *(_signed(d, kind) for d in deltas)]
            for lab, vals, deltas, kind in _figure_rows(cmp)
        ],
    )
    for c in cmp.comparisons:
        out += ["", f"**Per dimension, {c.input.label} vs A**", ""]
        if c.dims is None:
            out.append(c.dims_note)
            continue
        headers, rows, which = _dims_table(c, cmp, max_dims)
        out += [f"Dimensions shown: {which}.", ""]
        out += _md(headers, rows)
    out += ["", "**Sorted profiles** (largest first; no correspondence assumed)", ""]
    for title, headers, rows in _profile_tables(cmp, 8):
        out += [f"{title}:", "", *_md(headers, rows), ""]
    out += ["**Notes**", ""] + [f"- {n}" for n in _notes(cmp)]
    out.append("")
    return "\n".join(out)


@register("comparison", "text")
def _render_text(cmp: Comparison, options: RenderOptions) -> str:
    """Return (as the registered renderer) the comparison as text."""
    return render_text(cmp, width=options.width, max_dims=options.max_dims)


@register("comparison", "markdown")
def _render_markdown(cmp: Comparison, options: RenderOptions) -> str:
    """Return (as the registered renderer) the comparison as Markdown."""
    return render_markdown(cmp, max_dims=options.max_dims)
