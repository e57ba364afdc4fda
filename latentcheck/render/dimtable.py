"""The per-dimension table, defined once for the text, Markdown and HTML reports.

Each :class:`Column` says how one figure of ``report.dims`` is shown: its header in each
format (None leaves it out of that format), how a cell is written, the fragment of the
legend that explains it, and, for the terminal, how early it may be dropped when the table
does not fit. Adding a per-dimension figure to the tables is one entry in :data:`COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model.report import Report, level_key
from .formatting import fmt, pval

__all__ = ["COLUMNS", "Column", "TableContext", "dim_table"]

#: the formats that show the per-dimension table
FORMATS = ("text", "markdown", "html")


@dataclass(frozen=True)
class TableContext:
    """What the cells of one report's table read: the report and figures derived once."""

    report: Report
    precision: int
    headline: int
    klab: str
    ratio: Any
    rate: Any

    @classmethod
    def of(cls, report: Report, precision: int = 3) -> TableContext:
        """Return the context of `report`'s table, cells written to `precision` digits."""
        st = report.settings
        k4 = st.headline_level
        post = report.posterior
        return cls(
            report=report,
            precision=precision,
            headline=k4,
            klab=level_key(st.sigma_levels[k4]),
            ratio=report.outlier_ratio(k4),
            rate=None if post is None else np.asarray(post.kl_per_dim, dtype=float),
        )


Cell = Callable[[TableContext, int, str], str]


def _figure(name: str) -> Cell:
    """Return the cell of the per-dimension array ``report.dims.<name>``."""

    def cell(ctx: TableContext, j: int, fmt_name: str) -> str:
        values = getattr(ctx.report.dims, name)
        return "-" if values is None else fmt(values[j], ctx.precision)

    return cell


def _index(ctx: TableContext, j: int, fmt_name: str) -> str:
    dm = ctx.report.dims
    label = str(int(dm.index[j]))
    if fmt_name == "html" and dm.degenerate[j]:
        label += " (degenerate)"
    return label


def _rate(ctx: TableContext, j: int, fmt_name: str) -> str:
    rate = ctx.rate
    return fmt(rate[j], ctx.precision) if rate is not None and j < rate.size else "-"


def _ratio(ctx: TableContext, j: int, fmt_name: str) -> str:
    return fmt(ctx.ratio[j], 2)


def _shapiro(ctx: TableContext, j: int, fmt_name: str) -> str:
    sw = ctx.report.dims.tests.get("shapiro")
    return pval(sw.pvalue_holm[j]) if sw is not None else "-"


def _has_rate(ctx: TableContext) -> bool:
    return ctx.rate is not None


@dataclass(frozen=True)
class Column:
    """One column of the per-dimension table.

    Attributes
    ----------
    name : str
        Its identity (the ``report.dims`` field it shows, where there is one).
    headers : dict of str to str
        The header per format ("text", "markdown", "html"); a format without one does not
        show the column. ``{k}`` stands for the headline sigma level.
    cell : callable (context, j, format) -> str
        The cell of dimension j.
    legend : dict of str to str
        The legend's fragment per format (joined with "; "; ``{k}`` as in the headers).
    shown : callable (context) -> bool
        Whether the report has the figure at all (the posterior rate only with a posterior).
    drop : int or None
        On a narrow terminal, text columns are dropped in increasing `drop` order.
    """

    name: str
    headers: Mapping[str, str]
    cell: Cell
    legend: Mapping[str, str] = field(default_factory=dict)
    shown: Callable[[TableContext], bool] = lambda ctx: True
    drop: int | None = None


_ALL = dict.fromkeys(FORMATS)

#: the per-dimension table, in column order
COLUMNS: tuple[Column, ...] = (
    Column("index", {f: "dim" for f in FORMATS}, _index),
    Column(
        "mean",
        {f: "mean" for f in FORMATS},
        _figure("mean"),
        {
            "text": "mean, std: over all rows (ddof 0)",
            "html": "mean, std, min, max: over all rows (std with ddof 0, in the data's units)",
        },
        drop=4,
    ),
    Column("std", {f: "std" for f in FORMATS}, _figure("std")),
    Column(
        "mad",
        {"markdown": "mad", "html": "mad"},
        _figure("mad"),
        {"html": "mad: median absolute deviation of the sample rows × 1.4826 (a robust std)"},
    ),
    Column("min", {"html": "min"}, _figure("min")),
    Column("max", {"html": "max"}, _figure("max")),
    Column(
        "skewness",
        {"text": "skew", "html": "skew"},
        _figure("skewness"),
        {f: "skew, exkurt: moment ratios g1, g2" for f in ("text", "html")},
        drop=0,
    ),
    Column("excess_kurtosis", {f: "exkurt" for f in FORMATS}, _figure("excess_kurtosis")),
    Column(
        "kl_gauss",
        {f: "kl_gauss" for f in FORMATS},
        _figure("kl_gauss"),
        {
            "text": "kl_gauss: KL(N(mean,std^2) || N(0,1))",
            "html": "kl_gauss: KL(N(mean, std²) ‖ N(0,1))",
        },
        drop=1,
    ),
    Column(
        "negentropy",
        {f: "negent" for f in FORMATS},
        _figure("negentropy"),
        {
            "text": "negent: negentropy (non-Gaussian part)",
            "html": "negent: negentropy (the non-Gaussian part)",
        },
        drop=2,
    ),
    Column(
        "kl_marginal",
        {f: "kl_marg" for f in FORMATS},
        _figure("kl_marginal"),
        {
            "text": "kl_marg = kl_gauss + negent, an estimate of KL(q_j || N(0,1)), all in nats",
            "html": "kl_marg = kl_gauss + negent, an estimate of KL(q_j ‖ N(0,1)); all in nats",
        },
    ),
    Column(
        "rate",
        {"text": "rate", "html": "rate"},
        _rate,
        {
            "text": "rate: mean analytic KL(q(z_j|x) || N(0,1)) the training loss pays",
            "html": "rate: mean analytic KL(q(z_j|x) ‖ N(0,1)) the training loss pays (nats)",
        },
        shown=_has_rate,
    ),
    Column(
        "outlier_ratio",
        {"text": ">{k}sd x", "markdown": ">{k}sd ×", "html": ">{k}sd ×"},
        _ratio,
        {
            "text": ">{k}sd x: share of values beyond {k} std over the Gaussian share",
            "html": ">{k}sd ×: share of values beyond {k} std over the Gaussian share",
        },
    ),
    Column(
        "shapiro",
        {"text": "SW p_holm", "markdown": "SW p (Holm)", "html": "SW p_holm"},
        _shapiro,
        {
            "text": "SW p_holm: Shapiro-Wilk p-value, Holm-adjusted.",
            "html": "SW p_holm: Shapiro–Wilk p-value, Holm-adjusted.",
        },
        drop=3,
    ),
)


def dim_table(
    report: Report, fmt_name: str, order: Any, precision: int = 3
) -> tuple[list[str], list[list[str]], str, list[int | None]]:
    """Return (headers, rows, legend, drop ranks) of the table of dimensions `order`.

    `fmt_name` is "text", "markdown" or "html"; rows follow `order` (indices into
    ``report.dims``); the drop ranks go with the headers (see :attr:`Column.drop`).
    """
    ctx = TableContext.of(report, precision)
    cols = [c for c in COLUMNS if fmt_name in c.headers and c.shown(ctx)]
    headers = [c.headers[fmt_name].format(k=ctx.klab) for c in cols]
    rows = [[c.cell(ctx, int(j), fmt_name) for c in cols] for j in order]
    legend = "; ".join(c.legend[fmt_name].format(k=ctx.klab) for c in cols if fmt_name in c.legend)
    return headers, rows, legend, [c.drop for c in cols]
