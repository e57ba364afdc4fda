"""HTML sections of the report page for the joint, posterior and spatial blocks.

Each section reads the typed blocks of the report (``report.joint`` with its Mahalanobis
and MCD blocks, ``report.posterior``, ``report.spatial``) and formats numbers as the text
report does; ``htmlreport`` assembles the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..model.joint import MahalanobisBlock, McdBlock, TopRow
from ..model.report import Report
from .htmlparts import html_table, kv_table, para, section
from .htmlplots import maps, spectrum
from .textreport import (
    SPATIAL_LEGEND,
    bound_text,
    fmt,
    pct,
    posterior_rows,
    posterior_std_text,
    pval,
    separated_summary,
    spatial_table,
)

__all__ = ["joint_section", "posterior_section", "spatial_section"]


def joint_section(report: Report, dpi: int) -> str:
    """Return the joint block: decomposition, tests, Mahalanobis, MCD, spectrum."""
    jt, inp = report.joint, report.input
    if jt.skipped is not None:
        return section("joint", "Joint", [para(f"Joint part skipped: {jt.skipped}", "skip")])
    rows = [
        ("Dimensions used", f"{jt.n_dims_used} of {inp.n_dims}"),
        (
            "Gaussian fit",
            f"KL(N(m,S) ‖ N(0,I)) {fmt(jt.kl_gauss)} nats = sum kl_gauss "
            f"{fmt(jt.kl_gauss_dims)} + total correlation {fmt(jt.total_correlation)}",
        ),
        ("Effective dims", f"{fmt(jt.effective_dims)} (participation ratio (Σλ)²/Σλ²)"),
        ("Condition number", fmt(jt.condition_number)),
    ]
    if jt.dims_excluded:
        rows.append(("Left out", "; ".join(f"dim {i}: {why}" for i, why in jt.dims_excluded)))
    if jt.top_pairs:
        rows.append(
            ("Most correlated", ", ".join(f"({i},{j}) r={r:+.2f}" for i, j, r in jt.top_pairs))
        )
    out = [kv_table(rows), spectrum(report, dpi)]
    if jt.tests:
        trows = []
        for name, t in jt.tests.items():
            if t.reason:
                trows.append([name, "-", "-", "-", "-", f"skipped: {t.reason}"])
            else:
                trows.append(
                    [
                        name,
                        fmt(t.statistic),
                        pval(t.pvalue),
                        fmt(t.df),
                        fmt(t.effect_size),
                        t.method or "",
                    ]
                )
        out.append("<h3>Multivariate tests</h3>")
        out.append(
            html_table(["test", "statistic", "p-value", "df", "effect size", "method"], trows)
        )
    if jt.mahalanobis:
        out.extend(_mahalanobis(jt.mahalanobis))
    if jt.mcd:
        out.extend(_mcd(jt.mcd))
    return section("joint", "Joint", out)


def _top_rows(rows: Sequence[TopRow]) -> str:
    """Return the table of the rows with the largest distances."""
    if not rows:
        return ""
    return html_table(
        ["row", "d²", "where"], [[str(r.row), fmt(r.d2), str(r.where or "")] for r in rows]
    )


def _mahalanobis(m: MahalanobisBlock) -> list[str]:
    """Return the Mahalanobis outlier table and its top rows."""
    out = ["<h3>Mahalanobis distances</h3>"]
    if m.reason:
        return [*out, para(f"skipped: {m.reason}", "skip")]
    out.append(
        html_table(
            ["χ² quantile", "threshold d²", "beyond", "expected", "ratio"],
            [
                [
                    k,
                    fmt(m.thresholds.get(k)),
                    pct(rate, 2),
                    pct(m.expected_rate.get(k), 2),
                    fmt(m.rate_ratio.get(k), 2),
                ]
                for k, rate in m.outlier_rate.items()
            ],
        )
    )
    out.append(
        para(
            f"{m.distance or 'squared Mahalanobis distance'} against χ² with "
            f"{m.n_dims} degrees of freedom, over {m.n_rows} rows; the rows "
            "with the largest distances:",
            "caption",
        )
    )
    out.append(_top_rows(m.top_rows))
    return out


def _mcd(m: McdBlock) -> list[str]:
    """Return the robust (MinCovDet) distance block."""
    out = ["<h3>Robust distances (MCD)</h3>"]
    if m.reason:
        return [*out, para(f"skipped: {m.reason}", "skip")]
    out.append(
        para(
            f"{pct(m.outlier_rate, 2)} of {m.n_rows} sample rows beyond the χ² "
            f"0.975 quantile d² = {fmt(m.threshold)} (expected "
            f"{pct(m.expected_rate, 2)}); support fraction "
            f"{fmt(m.support_fraction)}. The rows with the largest robust distances:"
        )
    )
    out.append(_top_rows(m.top_rows))
    return out


def posterior_section(report: Report, order: NDArray[np.intp]) -> str:
    """Return the posterior block: rate, active units, posterior std, ELBO surgery, table."""
    post = report.posterior
    if post is None:
        return ""
    rate = (
        f"{fmt(post.rate_nats)} nats = {fmt(post.rate_bits)} bits per row "
        "(mean over inputs of KL(q(z|x) ‖ N(0,I)))"
    )
    if post.rows_per_sample > 1:
        rate += (
            f"; {fmt(post.rate_per_sample_nats)} nats per sample of "
            f"{post.rows_per_sample} positions"
        )
    rate += (
        f"; mean part (μ²/2) {fmt(post.rate_mean_part_nats)}, variance part "
        f"{fmt(post.rate_variance_part_nats)} nats"
    )
    collapsed = post.collapsed_dims
    rows = [
        ("Rate", rate),
        (
            "Active units",
            f"{post.active_units} of {report.input.n_dims} (Var_x μ_j > "
            f"{post.active_threshold:g}, Burda et al.); collapsed (rate < "
            f"{post.collapse_threshold:g} nats): "
            + (", ".join(str(i) for i in collapsed) if collapsed else "none"),
        ),
        ("Posterior std", posterior_std_text(post)),
    ]
    if post.has_mutual_information:
        est = post.estimator
        rows.append(
            (
                "ELBO surgery",
                f"rate = I(x;z) {fmt(post.mutual_information)} "
                f"(±{fmt(post.mutual_information_se, 2)}) + KL(q(z) ‖ p(z)) "
                f"{fmt(post.kl_aggregate)} nats; KL(q(z) ‖ p(z)) = total correlation "
                f"{fmt(post.total_correlation)} + dimension-wise KL "
                f"{fmt(post.dimwise_kl)}. Mixture estimate over "
                f"{est.get('n_mixture')} inputs: I(x;z) ≤ ln {est.get('n_mixture')} = "
                f"{fmt(est.get('bias_bound_nats'))}",
            )
        )
        regime = post.mutual_information_regime
        if regime in ("biased", "saturated"):  # issue 15, item 11
            mi_lo, mi_hi = bound_text(post.mixture_bounds.get("mutual_information"), 3, "∞")
            tc_lo, tc_hi = bound_text(post.mixture_bounds.get("total_correlation"), 3, "∞")
            rows.append(
                (
                    "ELBO surgery bias",
                    f"{regime}: the mixture estimate is biased low near ln n, so I(x;z) lies "
                    f"between {mi_lo} and {mi_hi} and total correlation between {tc_lo} and "
                    f"{tc_hi} (leave-one-out bounds); the ± above is Monte-Carlo error only",
                )
            )
    out = [para(f"From μ and {post.spread_input}; {post.n_samples} rows."), kv_table(rows)]
    d = report.dims.index.size
    arrays = [post.kl_per_dim, post.kl_mean_part, post.kl_variance_part, post.rate_share]
    arrays += [post.mu_var, post.snr, post.mean_posterior_std]
    if all(a is not None and np.size(a) == d for a in arrays):
        trows = posterior_rows(post, [int(j) for j in order])
        for row, j in zip(trows, order, strict=True):
            row[0] = str(int(report.dims.index[j]))
        out.append(
            html_table(
                ["dim", "rate", "mean part", "var part", "share", "Var μ", "SNR", "mean σ"],
                trows,
            )
        )
        out.append(
            para(
                "rate = mean part + var part (nats): what the KL term pays per dimension, for "
                "moving means (μ²/2) and for shrinking variances; share: of the total rate; "
                "Var μ = Var_x E[z_j|x]; SNR = Var μ / E[σ²]; mean σ: mean posterior std.",
                "caption",
            )
        )
    return section("posterior", "Posterior", out)


def spatial_section(report: Report, order: NDArray[np.intp], dpi: int) -> str:
    """Return the conv-latent block: channel table, separated tests, mean and std maps."""
    sp = report.spatial
    assert sp is not None
    shape = "×".join(str(s) for s in sp.spatial_shape)
    out = [para(f"Conv latents: {sp.n_items} samples of {shape} positions.")]
    headers, rows = spatial_table(report)
    out.append(html_table(headers, rows))
    sentence = separated_summary(report)
    if sentence:
        out.append(para(f"Separated positions: {sentence}."))
    out.append(para(SPATIAL_LEGEND, "caption"))
    out.append(maps(sp, "mean_map", order, dpi))
    out.append(maps(sp, "std_map", order, dpi))
    return section("spatial", "Spatial (conv latents)", out)
