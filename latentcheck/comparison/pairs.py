"""One input against the baseline: the per-comparison half of :func:`~latentcheck.compare`.

Holds the result types of one comparison (:class:`InputSummary`, :class:`DimTest`,
:class:`DimComparison`, :class:`PairComparison`, all importable from
:mod:`latentcheck.comparison.api`) and the logic that fills them: deltas of the summary
figures, per-dimension effect sizes and two-sample tests with the rule for a moved
dimension, the joint energy test on a bounded number of rows, the findings, and distances
between the sorted profiles. Reading the inputs, the :class:`~latentcheck.comparison.api.Comparison`
as a whole and its JSON form stay in :mod:`latentcheck.comparison.api`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..model.comparison import DimComparison, DimTest, InputSummary, PairComparison
from ..model.report import Finding, Report, TestResult, level_key
from ..stats.twosample import (
    adjust_pvalues,
    energy_two_sample,
    global_tests,
    ks_columns,
    moment_tests,
    scale_columns,
    wasserstein_columns,
)

__all__ = [
    "DIM_FIELDS",
    "JOINT_WORK_BUDGET",
    "DimComparison",
    "DimTest",
    "InputSummary",
    "Loaded",
    "PairComparison",
    "compare_pair",
    "floats",
]

F64 = NDArray[np.float64]

#: (2 · rows per side)² · n_dims above which the joint test uses fewer rows (bounds its time)
JOINT_WORK_BUDGET = 2.5e10
#: Quantities compared dimension by dimension: (key in the JSON, attribute of Report.dims).
DIM_FIELDS: tuple[tuple[str, str], ...] = (
    ("mean", "mean"),
    ("std", "std"),
    ("kl_marginal", "kl_marginal"),
    ("excess_kurtosis", "excess_kurtosis"),
)


Loaded = tuple[str, Report, NDArray[Any] | None, NDArray[Any] | None]


def floats(values: Any) -> F64:
    """Return values as a float array, None (null in a saved report) as NaN."""
    return np.array([np.nan if x is None else x for x in values], dtype=np.float64)


def _delta(a: Any, b: Any) -> dict[str, float | None]:
    """Return {baseline, value, delta, ratio} of two figures (None where undefined)."""
    fa = math.nan if a is None else float(a)
    fb = math.nan if b is None else float(b)
    ratio = fb / fa if fa != 0 else math.nan
    return {"baseline": fa, "value": fb, "delta": fb - fa, "ratio": ratio}


def _summary_deltas(f0: dict[str, Any], f1: dict[str, Any]) -> dict[str, Any]:
    """Return the deltas of every figure, nested like the figures."""
    out: dict[str, Any] = {}
    for name in f0:
        if isinstance(f0[name], dict):
            keys = list(dict.fromkeys([*f0[name], *f1[name]]))
            out[name] = {k: _delta(f0[name].get(k), f1[name].get(k)) for k in keys}
        else:
            out[name] = _delta(f0[name], f1[name])
    return out


def compare_pair(
    base: Loaded, other: Loaded, s0: InputSummary, s1: InputSummary, k: int, st: dict[str, Any]
) -> PairComparison:
    """Return the comparison of input `k` with the baseline."""
    (_, r0, x0, i0), (_, r1, x1, i1) = base, other
    # the tests take rows independent within each input: for conv latents the rows at
    # well-separated positions (issue 15); the W1 effect sizes take every sample row
    t0 = i0 if i0 is not None else x0
    t1 = i1 if i1 is not None else x1
    a, b = s0.label, s1.label
    d0, d1 = r0.input.n_dims, r1.input.n_dims
    notes: list[str] = []
    dims, test, test_rows = None, None, (0, 0)
    joint_rows, joint_dims = (0, 0), 0
    if d0 != d1:
        dims_note = (
            f"Not compared dimension by dimension: {a} has {d0} dimensions, {b} has {d1}; "
            f"summary figures and sorted profiles (top {min(d0, d1)} ranks) are compared"
        )
        joint = TestResult.skipped(f"{a} and {b} have different numbers of dimensions")
    else:
        dims, test, test_rows = _compare_dims(r0, r1, (x0, t0), (x1, t1), st, (a, b))
        dims_note = (
            f"Dimension i of {b} is compared with dimension i of {a}: this assumes the "
            "dimensions correspond (the same encoder fine-tuned or re-weighted), which "
            "separately trained models do not; their sorted profiles need no correspondence"
        )
        if (r0.input.shape[1:], r0.input.channel_axis) != (
            r1.input.shape[1:],
            r1.input.channel_axis,
        ):
            notes.append(
                f"{a} and {b} have different layouts ({r0.input.layout}; {r1.input.layout}); "
                "their dimensions are paired by index"
            )
        if t0 is None or t1 is None:
            joint = TestResult.skipped(
                f"the rows of {a if t0 is None else b} are not at hand (a saved report)"
            )
        else:
            m0, m1 = min(st["joint_test_samples"], len(t0)), min(st["joint_test_samples"], len(t1))
            cap = int(math.sqrt(JOINT_WORK_BUDGET / d0))
            if m0 + m1 > cap:
                m0, m1 = m0 * cap // (m0 + m1), m1 * cap // (m0 + m1)
                notes.append(f"The joint test uses {m0} and {m1} rows to bound its time")
            xa, xb = np.asarray(t0[:m0], np.float64), np.asarray(t1[:m1], np.float64)
            joint_rows = (m0, m1)
            joint_dims = int(np.sum(np.vstack([xa, xb]).std(axis=0) > 0))
            joint = energy_two_sample(
                xa, xb, n_permutations=st["n_permutations"], seed=[st["seed"], k]
            )
    for r, lab in ((r0, a), (r1, b)):
        if len(r.input.shape) > 2 and r.input.channel_axis is not None:
            notes.append(
                f"The rows of {lab} are positions of conv latents, correlated within an item: "
                "its two-sample tests (KS, energy) use the sample rows at well-separated "
                "positions, nearly independent, and the moment tests of a saved report use "
                "its design effects; W1 and the other effect sizes use every row"
            )
    summary_tests = global_tests(r0.summary.normalization, r1.summary.normalization)
    family = np.array([summary_tests["shift"].pvalue, summary_tests["scale"].pvalue, joint.pvalue])
    adjusted = adjust_pvalues(family, st["correction"])
    adj = dict(zip(("shift", "scale", "joint"), adjusted.tolist(), strict=True))
    findings = _findings(s0, s1, dims, test, summary_tests, adj, joint, st)
    return PairComparison(
        input=s1,
        changed=any(f.status == "warn" for f in findings),
        findings=tuple(findings),
        summary_deltas=_summary_deltas(s0.figures, s1.figures),
        summary_tests=summary_tests,
        summary_pvalues_adjusted=adj,
        test=test,
        test_rows=test_rows,
        dims=dims,
        dims_note=dims_note,
        moved_dims=() if dims is None else tuple(int(i) for i in np.flatnonzero(dims.moved)),
        joint=joint,
        joint_rows=joint_rows,
        joint_dims=joint_dims,
        profiles=_profile_distances(s0.profiles, s1.profiles),
        notes=tuple(notes),
    )


def _row_design_effect(reports: tuple[Report, Report], rows: tuple[int, int], d: int) -> F64 | None:
    """Design effect of variance-type statistics on the rows used, or None for iid inputs.

    For conv latents each report's ``spatial.design_effect_var`` is the inflation over all
    rows; a uniform subsample of a fraction f of them keeps a fraction f of each row's
    correlated neighbours, so its inflation is 1 + f (deff − 1). The larger of the two
    inputs' applies (issue 15, item 13).
    """
    out = None
    for rep, m in zip(reports, rows, strict=True):
        deff = None if rep.spatial is None else rep.spatial.design_effect_var
        if deff is None:
            continue
        f = m / max(rep.input.n_samples, 1)
        vals = np.array([np.nan if v is None else v for v in deff], dtype=np.float64)
        if vals.shape != (d,):
            continue
        sub = 1.0 + min(f, 1.0) * (vals - 1.0)
        out = sub if out is None else np.fmax(out, sub)
    return out


def _skipped_tests(d: int, reason: str) -> DimTest:
    """Return a DimTest that did not run."""
    nan = np.full(d, np.nan)
    return DimTest(statistic=nan, pvalue=nan, pvalue_adjusted=nan, method="", reason=reason)


def _compare_dims(
    r0: Report,
    r1: Report,
    rows0: tuple[NDArray[Any] | None, NDArray[Any] | None],
    rows1: tuple[NDArray[Any] | None, NDArray[Any] | None],
    st: dict[str, Any],
    labels: tuple[str, str],
) -> tuple[DimComparison, str, tuple[int, int]]:
    """Return the per-dimension comparison, the test behind its flag and its rows.

    `rows0` and `rows1` are (sample rows for W1, rows independent within the input for
    the KS tests) of each input; for row data both are the sample.
    """
    (x0, t0), (x1, t1) = rows0, rows1
    d = r0.input.n_dims
    th, alpha, corr = st["thresholds"], st["alpha"], st["correction"]
    base = {name: np.asarray(getattr(r0.dims, attr), np.float64) for name, attr in DIM_FIELDS}
    value = {name: np.asarray(getattr(r1.dims, attr), np.float64) for name, attr in DIM_FIELDS}
    keys0 = [level_key(k) for k in r0.settings.sigma_levels]
    keys1 = [level_key(k) for k in r1.settings.sigma_levels]
    base["outlier_rate"] = np.asarray(r0.dims.outlier_rate, np.float64)
    value["outlier_rate"] = np.array(
        [r1.dims.outlier_rate[keys1.index(k)] if k in keys1 else np.full(d, np.nan) for k in keys0]
    ).reshape(len(keys0), d)
    rates = [r.posterior.kl_per_dim if r.posterior is not None else None for r in (r0, r1)]
    if rates[0] is not None and rates[1] is not None:
        base["rate"], value["rate"] = floats(rates[0]), floats(rates[1])
    s0, s1 = base["std"], value["std"]
    dm = value["mean"] - base["mean"]
    pooled = np.sqrt((s0**2 + s1**2) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # both stds zero: no shift if the constants agree, else an infinite one
        shift = np.where(pooled > 0, dm / pooled, np.where(dm == 0, 0.0, np.sign(dm) * np.inf))
        log_ratio = np.where((s0 == 0) & (s1 == 0), 0.0, np.log(s1 / s0))
    if x0 is not None and x1 is not None and t0 is not None and t1 is not None:
        n0, n1 = min(st["test_samples"], len(x0)), min(st["test_samples"], len(x1))
        ya, yb = np.asarray(x0[:n0], np.float64), np.asarray(x1[:n1], np.float64)
        w = wasserstein_columns(ya, yb)
        m0, m1 = min(st["test_samples"], len(t0)), min(st["test_samples"], len(t1))
        xa, xb = np.asarray(t0[:m0], np.float64), np.asarray(t1[:m1], np.float64)
        stat, p, how = ks_columns(xa, xb)
        separated = not (t0 is x0 and t1 is x1)
        where = " (conv latents: at well-separated positions)" if separated else ""
        # issue 15, item 13: KS barely sees a rescaling; a scale test joins it, and the two
        # are corrected together as one family of 2 · n_dims tests. The scale test runs on
        # the sampled rows of all positions with their design effect (calibrated, and far
        # more powerful than the one row per item that separated positions may leave).
        deff = _row_design_effect((r0, r1), (n0, n1), d)
        w_bf, p_bf, how_bf = scale_columns(ya, yb, design_effect=deff)
        adj_ks = adjust_pvalues(np.concatenate([p, p_bf]), corr)
        both = "; corrected together with the other row test"
        ks = DimTest(stat, p, adj_ks[:d], f"{how} on {m0} and {m1} rows{where}{both}")
        scale_test = DimTest(w_bf, p_bf, adj_ks[d:], f"{how_bf} on {n0} and {n1} rows{both}")
        unused = "not used: the rows of both inputs are at hand, so the KS test decides"
        mean_test = std_test = _skipped_tests(d, unused)
        flag_test = (ks.pvalue_adjusted < alpha) | (scale_test.pvalue_adjusted < alpha)
        test, rows = "ks", (m0, m1)
    else:
        w = np.full(d, np.nan)
        missing = labels[0] if x0 is None else labels[1]
        ks = _skipped_tests(d, f"the rows of {missing} are not at hand (a saved report)")
        scale_test = _skipped_tests(d, f"the rows of {missing} are not at hand (a saved report)")
        moments = (
            (base["mean"], value["mean"]),
            (s0, s1),
            (base["excess_kurtosis"], value["excess_kurtosis"]),
        )
        # conv latents: n / design effect rows' worth of information (issue 15)
        zm, pm, _, _ = moment_tests(_effective_n(r0, r1, "design_effect_mean"), *moments)
        _, _, zs, ps = moment_tests(_effective_n(r0, r1, "design_effect_var"), *moments)
        adj = adjust_pvalues(np.concatenate([pm, ps]), corr)
        how = "large-sample z-test from the reports' moments, over all rows (conv latents: "
        how += "rows over the design effects); corrected "
        how += "together with the other moment test"
        mean_test = DimTest(zm, pm, adj[:d], "equal means: " + how)
        std_test = DimTest(zs, ps, adj[d:], "equal log-stds (Layard 1973): " + how)
        flag_test = (mean_test.pvalue_adjusted < alpha) | (std_test.pvalue_adjusted < alpha)
        test, rows = "moments", (0, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_std = w / pooled
    checks = {
        "shift": np.abs(shift) >= th["shift"],
        "scale": np.abs(log_ratio) >= th["log_std_ratio"],
        "distribution": w_std >= th["wasserstein"],
        "kl": np.abs(value["kl_marginal"] - base["kl_marginal"]) >= th["kl_marginal"],
    }
    reasons = tuple(tuple(name for name, c in checks.items() if c[j]) for j in range(d))
    flag_effect = np.array([bool(r) for r in reasons], dtype=bool)
    return (
        DimComparison(
            index=np.arange(d, dtype=np.int64),
            baseline=base,
            value=value,
            shift=shift,
            log_std_ratio=log_ratio,
            wasserstein=w,
            wasserstein_std=w_std,
            ks=ks,
            mean_test=mean_test,
            std_test=std_test,
            flagged_by_test=np.asarray(flag_test, dtype=bool),
            flagged_by_effect=flag_effect,
            moved=np.asarray(flag_test, dtype=bool) & flag_effect,
            effect_reasons=reasons,
            scale_test=scale_test,
        ),
        test,
        rows,
    )


def _effective_n(r0: Report, r1: Report, key: str) -> Any:
    """Return the rows of each report over its per-dimension design effect `key`.

    For row data the design effect is 1. For conv latents the report's exact design
    effects (Kish 1965; ``stats.design_effect``) turn rows into effective rows for the
    variance of a channel's mean (`design_effect_mean`) or of its variance
    (`design_effect_var`).
    """
    out: list[Any] = []
    for r in (r0, r1):
        deff = None if r.spatial is None else getattr(r.spatial, key)
        if deff is None:
            out.append(float(r.input.n_samples))
        else:
            f = np.nan_to_num(floats(deff), nan=1.0)
            out.append(r.input.n_samples / np.where(f > 0, f, 1.0))
    return tuple(out)


def _findings(
    s0: InputSummary,
    s1: InputSummary,
    dims: DimComparison | None,
    test: str | None,
    tests: dict[str, TestResult],
    adj: dict[str, float],
    joint: TestResult,
    st: dict[str, Any],
) -> list[Finding]:
    """Return the verdict of one comparison, one finding per aspect."""
    a, b, alpha, th = s0.label, s1.label, st["alpha"], st["thresholds"]
    out = []
    if dims is None:
        out.append(
            Finding(
                "dimensions",
                "warn",
                f"{b} has {s1.n_dims} dimensions, {a} has {s0.n_dims}",
                code="dims_count_differs",
            )
        )
    else:
        moved = np.flatnonzero(dims.moved)
        by = "KS or Brown-Forsythe" if test == "ks" else "mean/std z-tests"
        rule = f"{by} ({st['correction']}, alpha {alpha:g}) and effect size"
        if moved.size:
            shown = ", ".join(str(i) for i in moved[:12]) + (" ..." if moved.size > 12 else "")
            text = f"{moved.size} of {s0.n_dims} dimensions moved ({rule}): {shown}"
            out.append(
                Finding("dimensions", "warn", text, code="dims_moved", dims=tuple(map(int, moved)))
            )
        else:
            n_t, n_e = int(dims.flagged_by_test.sum()), int(dims.flagged_by_effect.sum())
            text = (
                f"No dimension moved ({rule}); {n_t} flagged by the test alone, {n_e} by "
                "effect size alone"
            )
            out.append(Finding("dimensions", "ok", text, code="no_dims_moved"))
        out += _correspondence_hint(dims, th["kl_marginal"])
    shift, scale = tests["shift"], tests["scale"]
    moved_shift = adj["shift"] < alpha and abs(shift.effect_size or 0.0) >= th["shift"]
    moved_scale = adj["scale"] < alpha and abs(scale.effect_size or 0.0) >= th["log_std_ratio"]
    ratio = math.exp(scale.effect_size) if scale.effect_size is not None else math.nan
    text = (
        f"global std x{ratio:.3g} (p_adj {_p(adj['scale'])}), global mean shift "
        f"{shift.effect_size:+.3g} pooled std (p_adj {_p(adj['shift'])})"
    )
    if moved_scale or moved_shift:
        what = " and ".join(w for w, m in (("scale", moved_scale), ("shift", moved_shift)) if m)
        out.append(Finding("scale", "warn", f"Global {what} changed: {text}", code="global_moved"))
    else:
        out.append(
            Finding(
                "scale",
                "ok",
                f"Global scale and shift did not move (test and effect): {text}",
                code="global_unchanged",
            )
        )
    if joint.reason:
        out.append(
            Finding("joint", "note", f"Joint test not run: {joint.reason}", code="joint_skipped")
        )
    else:
        text = (
            f"energy test p {_p(joint.pvalue)} (p_adj {_p(adj['joint'])}), coefficient "
            f"E/(2 E|x-y|) {joint.effect_size:.3g}"
        )
        if adj["joint"] < alpha:
            out.append(
                Finding(
                    "joint", "warn", f"Joint distributions differ: {text}", code="joint_differs"
                )
            )
        else:
            out.append(
                Finding("joint", "ok", f"Joint test finds no difference: {text}", code="joint_same")
            )
    f0, f1 = s0.figures, s1.figures
    if f0["rate_nats"] is not None and f1["rate_nats"] is not None:
        text = f"Rate {f0['rate_nats']:.4g} -> {f1['rate_nats']:.4g} nats"
        if f0["active_units"] is not None and f1["active_units"] is not None:
            text += f"; active units {f0['active_units']} -> {f1['active_units']}"
        out.append(Finding("rate", "note", text, code="rate"))
    return out


def _correspondence_hint(dims: DimComparison, min_kl: float) -> list[Finding]:
    """Return a note when pairing dimensions by index fits far worse than pairing by size.

    Sorted pairing minimises Σ|a_i − b_π(i)| over permutations π (the rearrangement
    inequality for |·|), so the ratio of the sorted to the by-index distance of the
    kl_marginal profiles is in [0, 1]; below 1/3 the dimensions look permuted or unrelated.
    """
    a, b = dims.baseline["kl_marginal"], dims.value["kl_marginal"]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return []
    by_index = float(np.mean(np.abs(a[ok] - b[ok])))
    by_size = float(np.mean(np.abs(np.sort(a[ok]) - np.sort(b[ok]))))
    if by_index < min_kl or by_size > by_index / 3:
        return []
    text = (
        f"The dimensions may not correspond: paired by index their kl_marginal differs by "
        f"{by_index:.3g} nats on average, paired by size by {by_size:.3g}; for separately "
        "trained models read the sorted profiles"
    )
    return [Finding("dimensions", "note", text, code="dims_may_not_correspond")]


def _p(p: float) -> str:
    """Return a p-value in two significant digits ("<1e-300" when it underflows)."""
    return "<1e-300" if p == 0 else f"{p:.2g}"


def _profile_distances(p0: dict[str, F64], p1: dict[str, F64]) -> dict[str, dict[str, Any]]:
    """Return, per sorted profile, the mean and max |difference| over the common ranks."""
    out: dict[str, dict[str, Any]] = {}
    for name, a in p0.items():
        b = p1[name]
        m = min(a.size, b.size)
        diff = np.abs(a[:m] - b[:m])
        rec = {
            "n_ranks": m,
            "mean_abs_diff": float(diff.mean()) if m else math.nan,
            "max_abs_diff": float(diff.max()) if m else math.nan,
        }
        if name == "eigenvalue_share" and m:
            n = max(a.size, b.size)
            pa, pb = np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))
            rec["total_variation"] = 0.5 * float(np.abs(pa - pb).sum())
        out[name] = rec
    return out
