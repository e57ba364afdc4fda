"""Flat headline metrics for experiment trackers (issue 18).

``Report.to_metrics()`` and ``Comparison.to_metrics()`` return a flat ``dict[str, float]``
ready for ``wandb.log``, ``mlflow.log_metrics``, TensorBoard's ``add_scalar`` (one call per
key) and ``accelerator.log``. Keys are ``prefix + name``; the names and units are listed
in :data:`REPORT_METRICS` (and in the README). Figures that are not available (NaN, a
skipped joint part, no posterior) are left out rather than sent as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model.comparison import Comparison
    from .model.report import Report

__all__ = ["REPORT_METRICS", "comparison_metrics", "report_metrics"]

#: name -> unit and meaning; ``{k}`` is a sigma level ("3".."6"), ``{test}`` a test name
REPORT_METRICS: dict[str, str] = {
    "n_samples": "rows analysed (count)",
    "n_dims": "dimensions (count)",
    "kl_gauss_sum": "sum over dimensions of KL(N(mean, std²) || N(0, 1)) (nats)",
    "kl_marginal_sum": "sum over dimensions of KL(marginal || N(0, 1)) (nats)",
    "negentropy_sum": "sum over dimensions of the negentropy (nats)",
    "negentropy_max": "worst (largest) per-dimension negentropy (nats)",
    "kl_joint_gauss": "KL(N(mean, cov) || N(0, I)) of the joint Gaussian fit (nats)",
    "total_correlation": "total correlation of the Gaussian fit (nats)",
    "effective_dims": "participation ratio of the covariance spectrum (dimensions)",
    "std_min": "smallest per-dimension std (latent units)",
    "std_max": "largest per-dimension std (latent units)",
    "outlier_ratio/{k}": "rate beyond k std of the mean / Gaussian rate 2Φ(−k) (ratio)",
    "prior_outlier_rate/{k}": "fraction of values with |z| > k (fraction)",
    "mahalanobis_rate_ratio/{q}": "rate beyond the chi² q-quantile / (1 − q) (ratio)",
    "dims_rejected/{test}": "dimensions rejected by the univariate test after Holm (count)",
    "scale": "fitted scaling_factor 1/std over all values (1/latent units)",
    "shift": "fitted shift_factor, the mean over all values (latent units)",
    "scale_rms": "1/sqrt(mean z²), the factor without a shift (1/latent units)",
    "rate_nats": "posterior only: Σ_j E_x KL(q(z_j|x) || N(0, 1)) (nats per row)",
    "active_units": "posterior only: dimensions with Var_x(mu_j) above the threshold (count)",
    "verdict/{status}": "findings with status ok, note and warn (count)",
}


def _put(out: dict[str, float], key: str, value: Any) -> None:
    """Store a finite number (booleans as 0/1); leave out None, NaN and ±inf."""
    if value is None:
        return
    try:
        x = float(value)
    except (TypeError, ValueError):
        return
    if math.isfinite(x):
        out[key] = x


def _statuses(findings: Iterable[Any]) -> dict[str, float]:
    """Count findings by status (always the three keys ok, note, warn)."""
    counts = {"ok": 0.0, "note": 0.0, "warn": 0.0}
    for f in findings:
        status = str(getattr(f, "status", ""))
        counts[status] = counts.get(status, 0.0) + 1.0
    return counts


def report_metrics(report: Report, prefix: str = "latents/") -> dict[str, float]:
    """Return the headline figures of `report` as a flat dict (see :data:`REPORT_METRICS`)."""
    import numpy as np

    out: dict[str, float] = {}
    s = report.summary

    def put(name: str, value: Any) -> None:
        _put(out, prefix + name, value)

    put("n_samples", report.input.n_samples)
    put("n_dims", report.input.n_dims)
    put("kl_gauss_sum", s.kl_gauss_sum)
    put("kl_marginal_sum", s.kl_marginal_sum)
    put("negentropy_sum", s.negentropy_sum)
    neg = np.asarray(report.dims.negentropy, dtype=np.float64)
    if np.isfinite(neg).any():
        put("negentropy_max", np.nanmax(neg))
    put("kl_joint_gauss", report.joint.kl_gauss)
    put("total_correlation", report.joint.total_correlation)
    put("effective_dims", s.effective_dims)
    put("std_min", s.std_range[0])
    put("std_max", s.std_range[1])
    for k, ratio in s.outlier_ratio.items():
        put(f"outlier_ratio/{k}", ratio)
    for k, rate in s.prior_outlier_rate.items():
        put(f"prior_outlier_rate/{k}", rate)
    maha = report.joint.mahalanobis
    for q, ratio in (maha.rate_ratio if maha is not None else {}).items():
        put(f"mahalanobis_rate_ratio/{q}", ratio)
    for test, count in s.dims_rejected.items():
        put(f"dims_rejected/{test}", count)
    put("scale", s.normalization.scale)
    put("shift", s.normalization.shift)
    put("scale_rms", s.normalization.scale_rms)
    if report.posterior is not None:
        put("rate_nats", report.posterior.rate_nats)
        put("active_units", report.posterior.active_units)
    for status, n_found in _statuses(s.findings).items():
        put(f"verdict/{status}", n_found)
    return out


def _flat(out: dict[str, float], prefix: str, figures: Mapping[str, Any]) -> None:
    """Store a mapping nested one level (``outlier_rate["4"]``) under prefix/name[/key]."""
    for name, value in figures.items():
        if isinstance(value, Mapping):
            for key, x in value.items():
                _put(out, f"{prefix}{name}/{key}", x)
        else:
            _put(out, f"{prefix}{name}", value)


def comparison_metrics(comparison: Comparison, prefix: str = "latents/") -> dict[str, float]:
    """Return a comparison's headline figures as a flat dict.

    Keys: ``{prefix}{label}/{figure}`` for every input's headline figures (label "A" is the
    baseline, then "B", "C", ...; the figures of ``compare``'s ``baseline.figures``), and per
    compared input ``{prefix}{label}/changed`` (0/1), ``/moved_dims`` (count),
    ``/joint_pvalue``, ``/delta/{figure}`` (value − baseline) and ``/verdict/{status}``.
    """
    out: dict[str, float] = {}
    base = comparison.baseline
    _flat(out, f"{prefix}{base.label}/", base.figures)
    for pair in comparison.comparisons:
        p = f"{prefix}{pair.input.label}/"
        _flat(out, p, pair.input.figures)
        _put(out, p + "changed", bool(pair.changed))
        _put(out, p + "moved_dims", len(pair.moved_dims))
        _put(out, p + "joint_pvalue", pair.joint.pvalue)
        for name, d in pair.summary_deltas.items():
            if isinstance(d, Mapping) and "delta" in d:
                _put(out, f"{p}delta/{name}", d["delta"])
        for status, count in _statuses(pair.findings).items():
            _put(out, f"{p}verdict/{status}", count)
    return out
