"""Plots of the HTML report, drawn with matplotlib and embedded as inline PNG.

Each function draws one figure from a :class:`~latentcheck.model.report.Report` and returns it as
an HTML ``<figure>`` element with a ``data:`` PNG image and a caption: per-dimension
histograms of standardised values against the N(0, 1) density, a Q-Q plot, per-dimension
KL bars (and the posterior rate), the covariance eigen-spectrum, and per-channel maps of
conv latents. Figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas,
never pyplot, so a user's backend, style and open figures are left alone. matplotlib is
imported inside the functions: it is an optional extra (``latentcheck[plots]``).
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..model.report import HISTOGRAM_EDGES, Report, level_key
from ..model.spatial import SpatialBlock
from .textreport import fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_html", "floats", "histograms", "kl_bars", "maps", "plot_style", "qq", "spectrum"]

F64 = NDArray[np.float64]
HIGHLIGHT = 5  # dims named in the Q-Q legend


def _skip(text: str) -> str:
    """Return a paragraph saying why a plot is missing."""
    return f'<p class="skip">{html.escape(text)}</p>'


def floats(values: Any) -> F64:
    """Return a (possibly nested) list with None as NaN, as a float64 array."""
    if values is None:
        return np.empty(0)

    def clean(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return math.nan if v is None else v

    return np.asarray(
        clean(values.tolist() if isinstance(values, np.ndarray) else values), dtype=np.float64
    )


@contextmanager
def plot_style() -> Iterator[None]:
    """Use matplotlib's default style with small fonts, restoring the caller's afterwards."""
    import matplotlib.style

    # the user's rcParams or style sheet must not restyle the report, nor be changed by it
    with (
        warnings.catch_warnings(),
        matplotlib.style.context(
            [
                "default",
                {
                    "font.size": 8,
                    "axes.titlesize": 8,
                    "axes.labelsize": 8,
                    "xtick.labelsize": 7,
                    "ytick.labelsize": 7,
                    "legend.fontsize": 7,
                    "figure.titlesize": 10,
                },
            ]
        ),
    ):
        # a layout that does not fit still gives a readable plot; not the user's concern
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        yield


def _figure(
    width: float, height: float, layout: Literal["constrained"] | None = "constrained"
) -> Figure:
    """Return a new figure (no pyplot, so no global figure manager)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def figure_html(fig: Figure, dpi: int, alt: str, caption: str) -> str:
    """Return `fig` as an inline PNG inside a figure element with its caption."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # no "Software" metadata: the page need not carry the matplotlib version
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<figure>\n<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def _finite(values: Any) -> F64:
    """Return `values` as floats with ±inf as NaN (bars of infinite height are not drawn)."""
    out = np.array(values, dtype=np.float64)
    out[np.isinf(out)] = np.nan
    return out


def _bar_limits(ax: Any, totals: F64) -> float | None:
    """Set the y range of a bar chart; return the cut-off if a few outlying bars were cut.

    When the tallest bar is more than 4 times the (k+1)-th tallest (k = a tenth of the bars,
    at least 1), one outlying dimension would flatten all others, so the bars taller than
    1.3 times the (k+1)-th get their value written on them and run off the top of the axis.
    """
    top = float(totals.max()) if totals.size else 0.0
    ordered = np.sort(totals)[::-1]
    k = max(1, totals.size // 10)
    cut = None
    if totals.size > k + 1 and ordered[k] > 0 and top > 4.0 * ordered[k]:
        cut = 1.3 * float(ordered[k])
        # labels below the legend band (cut to 1.3 cut): inside the bars, under the cut
        for x in np.flatnonzero(totals > cut):
            ax.text(
                x,
                0.97 * cut,
                fmt(totals[x], 3),
                rotation=90,
                ha="center",
                va="top",
                fontsize=6,
                color="white",
                fontweight="bold",
            )
        top = cut
    ax.set_ylim(0.0, top * 1.3 if top > 0 else 1.0)
    ax.legend(loc="upper left", ncols=2, framealpha=0.85, edgecolor="none")
    return cut


def _dim_ticks(ax: Any, labels: Sequence[int]) -> None:
    """Label the x axis with dimension indices (every k-th when there are many)."""
    n = len(labels)
    step = max(1, math.ceil(n / 32))
    pos = list(range(0, n, step))
    ax.set_xticks(pos)
    ax.set_xticklabels([str(labels[i]) for i in pos])
    ax.set_xlim(-0.7, n - 0.3)


def histograms(report: Report, order: NDArray[np.intp], dpi: int) -> str:
    """Return the grid of per-dimension histograms of standardised values."""
    dm = report.dims
    edges = np.asarray(HISTOGRAM_EDGES)
    hist = dm.histogram
    if hist is None or hist.ndim != 2 or hist.shape[1] != edges.size + 1:
        return _skip("No histogram in this report (saved by an older version?).")
    n = len(order)
    ncols = min(8, n)
    nrows = math.ceil(n / ncols)
    width, height = 1.45 * ncols + 0.6, 1.15 * nrows + 1.1
    # fixed margins in inches: constrained layout costs seconds with 64 panels
    fig = _figure(width, height, layout=None)
    fig.subplots_adjust(
        left=0.55 / width,
        right=1.0 - 0.1 / width,
        bottom=0.5 / height,
        top=1.0 - 0.75 / height,
        wspace=0.3,
        hspace=0.65,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    grid = np.linspace(edges[0], edges[-1], 201)
    phi = np.exp(-0.5 * grid**2) / math.sqrt(2.0 * math.pi)
    widths = np.diff(edges)
    under_total = over_total = 0
    for slot, ax in enumerate(axes.flat):
        if slot >= n:
            ax.set_visible(False)
            continue
        j = int(order[slot])
        counts = hist[j].astype(np.float64)
        total = counts.sum()
        ax.set_title(
            f"dim {int(dm.index[j])}\nKL {fmt(dm.kl_marginal[j], 2)}, "
            f"negent {fmt(dm.negentropy[j], 2)}",
            pad=2,
            fontsize=7,
        )
        ax.tick_params(length=2, pad=1)
        if total <= 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        under, over = int(counts[0]), int(counts[-1])
        under_total += under
        over_total += over
        ax.stairs(counts[1:-1] / (total * widths), edges, fill=True, color="#7aa6d6")
        ax.plot(grid, phi, color="#b71c1c", lw=0.9)
        ax.set_ylim(bottom=0)
        for value, label, x, ha in ((under, "<−5σ", 0.02, "left"), (over, ">5σ", 0.98, "right")):
            if value:
                ax.text(
                    x,
                    0.97,
                    f"{label}: {value}",
                    transform=ax.transAxes,
                    ha=ha,
                    va="top",
                    fontsize=5.5,
                )
    fig.supxlabel("standardised value (z − mean)/std (σ)", fontsize=8)
    fig.supylabel("density (per σ)", fontsize=8)
    fig.suptitle(
        "Histograms of standardised values (blue) against the N(0,1) density (red)",
        y=1.0 - 0.12 / height,
    )
    rows = report.settings.sample_rows
    caption = (
        f"From the seeded sample of {rows} rows, in 0.25σ bins from −5σ to 5σ; panel titles "
        f"give kl_marginal and negentropy (nats): standardising removes the scale, so the "
        "departure left in the picture is the negentropy. Values beyond ±5σ are counted in "
        f"the panel's corner when there are any ({under_total} below −5σ and {over_total} "
        "above 5σ over the dimensions shown)."
    )
    return figure_html(fig, dpi, "Per-dimension histograms against N(0,1)", caption)


def qq(report: Report, order: NDArray[np.intp], dpi: int) -> str:
    """Return the Q-Q plot of standardised quantiles against N(0,1), all dims together."""
    dm, st = report.dims, report.settings
    levels = [p for p in st.quantile_levels if 0.0 < p < 1.0]
    rows_of = [i for i, p in enumerate(st.quantile_levels) if 0.0 < p < 1.0]
    if not levels or dm.quantiles.shape[0] != len(st.quantile_levels):
        return _skip("No quantiles in this report.")
    theory = np.array([NormalDist().inv_cdf(p) for p in levels])
    fig = _figure(5.2, 4.4)
    ax = fig.add_subplot()
    std = dm.std[order]
    usable = [j for j, s in zip(order, std, strict=True) if np.isfinite(s) and s > 0]
    key = {j: (dm.kl_marginal[j] if np.isfinite(dm.kl_marginal[j]) else -np.inf) for j in usable}
    top = sorted(usable, key=lambda j: -key[j])[:HIGHLIGHT]
    lo, hi = float(theory.min()), float(theory.max())
    for j in usable:
        q = (dm.quantiles[rows_of, j] - dm.mean[j]) / dm.std[j]
        if j in top:
            continue
        ax.plot(theory, q, color="#9e9e9e", lw=0.7, alpha=0.6, marker="o", ms=1.5)
        lo, hi = min(lo, float(np.nanmin(q))), max(hi, float(np.nanmax(q)))
    for rank, j in enumerate(top):
        q = (dm.quantiles[rows_of, j] - dm.mean[j]) / dm.std[j]
        label = f"dim {int(dm.index[j])} (kl_marginal {fmt(dm.kl_marginal[j], 2)})"
        ax.plot(theory, q, color=f"C{rank}", lw=1.1, marker="o", ms=2.5, label=label)
        lo, hi = min(lo, float(np.nanmin(q))), max(hi, float(np.nanmax(q)))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="identity (Gaussian)")
    ax.set_xlabel("N(0,1) quantile (σ)")
    ax.set_ylabel("standardised sample quantile (q − mean)/std (σ)")
    ax.set_title("Q-Q: standardised quantiles against N(0,1)")
    ax.grid(True, lw=0.3)
    ax.legend(loc="upper left")
    where = "all rows (exact)" if st.quantiles_exact else f"the seeded sample of {st.sample_rows}"
    caption = (
        f"Quantiles at levels {', '.join(level_key(p) for p in levels)} from {where}, one "
        f"line per dimension ({len(usable)}); the {len(top)} with the largest kl_marginal "
        "in colour. Points above the identity line on the right and below it on the left "
        "mean heavier tails than a Gaussian; the other way round, lighter tails."
    )
    return figure_html(fig, dpi, "Q-Q plot of standardised quantiles against N(0,1)", caption)


def kl_bars(report: Report, order: NDArray[np.intp], dpi: int) -> str:
    """Return the per-dimension KL bars (and the posterior rate bars below them)."""
    dm = report.dims
    post = report.posterior
    mean_part = floats(post.kl_mean_part if post is not None else None)
    var_part = floats(post.kl_variance_part if post is not None else None)
    with_rate = mean_part.size == dm.index.size and var_part.size == dm.index.size
    n = len(order)
    width = min(10.0, max(6.0, 3.0 + 0.16 * n))
    fig = _figure(width, 4.6 if with_rate else 2.8)
    axes = fig.subplots(2 if with_rate else 1, 1, squeeze=False, sharex=True)[:, 0]
    x = np.arange(n)
    labels = [int(dm.index[j]) for j in order]
    # a dead dimension's kl_gauss is +inf (issue 16): no bar (matplotlib cannot draw one),
    # "inf" written at its foot instead
    kg = _finite(dm.kl_gauss[order])
    ax = axes[0]
    ax.bar(x, kg, color="#5c85c4", label="kl_gauss (moment-matched part)")
    ax.bar(
        x,
        _finite(dm.negentropy[order]),
        bottom=np.nan_to_num(kg),
        color="#f0a04b",
        label="negentropy (non-Gaussian part)",
    )
    for j in np.flatnonzero(np.isinf(dm.kl_gauss[order])):
        ax.text(j, 0.0, "inf", rotation=90, ha="center", va="bottom", fontsize=6)
    ax.set_ylabel("nats")
    ax.set_title("KL(q_j ‖ N(0,1)) per dimension = kl_gauss + negentropy (stacked)")
    cuts = [_bar_limits(ax, np.nan_to_num(kg) + np.nan_to_num(_finite(dm.negentropy[order])))]
    if with_rate:
        ax2 = axes[1]
        mp = mean_part[order]
        ax2.bar(x, mp, color="#7b5ea7", label="mean part μ²/2")
        ax2.bar(
            x,
            var_part[order],
            bottom=np.nan_to_num(mp),
            color="#b9a6d6",
            label="variance part (σ² − 1 − ln σ²)/2",
        )
        ax2.set_ylabel("nats")
        ax2.set_title("Posterior rate per dimension: mean over inputs of KL(q(z_j|x) ‖ N(0,1))")
        cuts.append(_bar_limits(ax2, np.nan_to_num(mp) + np.nan_to_num(var_part[order])))
    for a in axes:
        a.grid(True, axis="y", lw=0.3)
        a.set_axisbelow(True)
    _dim_ticks(axes[-1], labels)
    axes[-1].set_xlabel("dimension")
    caption = (
        "Top: the aggregate posterior's per-dimension KL to the prior (kl_marginal) split into "
        "its Gaussian-fit part and negentropy."
    )
    if with_rate:
        caption += (
            " Bottom, aligned by dimension on its own scale: the rate the KL term of the "
            "training loss pays, split into the part for moving means and the part for "
            "shrinking variances."
        )
    if any(c is not None for c in cuts):
        caption += (
            " A few bars far taller than the rest are cut at the top of the axis, with their "
            "value written on them, so that the other dimensions stay readable."
        )
    return figure_html(fig, dpi, "Per-dimension KL bars", caption)


def spectrum(report: Report, dpi: int) -> str:
    """Return the covariance eigen-spectrum on a log scale with the effective dims marked."""
    jt = report.joint
    ev = np.asarray(jt.eigenvalues, dtype=np.float64)
    pos = ev[np.isfinite(ev) & (ev > 0)]
    if pos.size == 0:
        return _skip("No positive covariance eigenvalues to plot.")
    from matplotlib.ticker import MaxNLocator

    fig = _figure(5.6, 3.2)
    ax = fig.add_subplot()
    rank = np.arange(1, pos.size + 1)
    ax.plot(rank, pos, marker="o", ms=2.5, lw=1.0, color="#1f5fa8", label="eigenvalue")
    ax.set_yscale("log")
    decades = math.log10(float(pos.max() / pos.min()))
    if decades < 3:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        # under three decades the default log axis labels one tick or none
        subs = [float(k) for k in range(1, 10)] if decades < 1 else [1.0, 2.0, 5.0]
        ax.yaxis.set_major_locator(LogLocator(subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="#777777", lw=0.8, ls=":", label="prior variance 1")
    if np.isfinite(jt.effective_dims):
        ax.axvline(
            jt.effective_dims,
            color="#c62828",
            lw=1.0,
            ls="--",
            label=f"effective dims {fmt(jt.effective_dims)}",
        )
    ax.set_xlabel("rank")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("eigenvalue (data units², log scale)")
    ax.set_title("Covariance eigen-spectrum")
    ax.grid(True, which="major", lw=0.3)
    ax.legend(loc="upper right")
    dropped = ev.size - pos.size
    caption = (
        f"Eigenvalues of the covariance of the {jt.n_dims_used} dimensions used, descending; "
        "the dashed line marks the effective dimensionality (participation ratio)."
    )
    if dropped:
        caption += f" {dropped} eigenvalue(s) ≤ 0 or not finite are not drawn."
    return figure_html(fig, dpi, "Covariance eigen-spectrum", caption)


def maps(sp: SpatialBlock, name: str, order: NDArray[np.intp], dpi: int) -> str:
    """Return one heatmap per channel of a per-position map ("mean_map" or "std_map")."""
    maps = floats(sp.mean_map if name == "mean_map" else sp.std_map)
    if maps.ndim < 2 or maps.shape[0] == 0:
        return ""
    channels = [int(c) for c in order if c < maps.shape[0]]
    if not channels:
        return ""
    # one 2-D image per channel: a 1-D map is one row; leading axes of a 3-D map are stacked
    images = [m[None, :] if m.ndim == 1 else m.reshape(-1, m.shape[-1]) for m in maps[channels]]
    stacked = maps.ndim > 3
    finite = np.concatenate([im[np.isfinite(im)] for im in images])
    if finite.size == 0:
        return ""
    if name == "mean_map":
        top = float(np.abs(finite).max()) or 1.0
        vmin, vmax, cmap = -top, top, "RdBu_r"
        what, unit = "mean", "mean (data units)"
    else:
        vmin, vmax, cmap = 0.0, float(finite.max()) or 1.0, "viridis"
        what, unit = "std", "std (data units)"
    n = len(channels)
    ncols = min(8, n)
    nrows = math.ceil(n / ncols)
    h, w = images[0].shape
    cell = 1.3
    fig = _figure(cell * ncols * max(1.0, w / max(h, 1)) ** 0.5 + 1.2, max(2.2, cell * nrows + 0.7))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    mappable = None
    for slot, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if slot >= n:
            ax.set_visible(False)
            continue
        mappable = ax.imshow(images[slot], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"channel {channels[slot]}", pad=2)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.9, label=unit)
    fig.suptitle(f"Per-channel {what} at each position")
    caption = (
        f"The {what} of each channel at each spatial position over the {sp.n_items} "
        "samples, on one colour scale for all channels"
        + (" (centred on the prior's 0)" if name == "mean_map" else " (from 0)")
        + ("; the leading spatial axes are stacked vertically" if stacked else "")
        + "."
    )
    return figure_html(fig, dpi, f"Per-channel {what} maps", caption)
