"""The comparison model: inputs compared with a baseline, and their JSON form.

``compare`` (in ``comparison``) and ``_compare_pairs`` compute these; the renderers in
``render/comparetext`` read them. :meth:`Comparison.to_dict` is the one JSON boundary. This
module imports no renderer: text and Markdown go through the renderer registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..render.registry import render
from .base import Finding, TestResult, to_jsonable
from .report import Report

# COMPARE_SCHEMA_VERSION history (one line per bump):
# 1: first release: settings, baseline, comparisons (summary_deltas, dims, joint, profiles).
# 2: findings with code and dims; settings.relation; dims.scale_test, adjusted with KS as
#    one family; conv inputs' KS and energy tests on rows at separated positions.
COMPARE_SCHEMA_VERSION = 2

__all__ = [
    "COMPARE_SCHEMA_VERSION",
    "Comparison",
    "DimComparison",
    "DimTest",
    "InputSummary",
    "PairComparison",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class InputSummary:
    """One input of a comparison: what it is and its headline figures.

    Attributes
    ----------
    label : str
        "A" for the baseline, then "B", "C", ... in the order given.
    origin : str
        "latents" (analysed now), "analysis" (an Analysis object), "report" (a Report or a
        dict), "saved report" (a ``.json`` file) or "profile" (saved ``.lcprof`` profiles).
    sources : tuple of str
        The files (or "array") the latents came from.
    kind, layout, dtype : str
        As in ``Report.input``.
    shape : tuple of int
    n_samples, n_dims : int
    rows_at_hand : int
        Rows of the seeded sample available for two-sample tests (0 for a saved report).
    figures : dict
        Headline figures, nested one level (``outlier_rate["4"]``); None where unavailable.
    profiles : dict of str to ndarray
        Per-dimension figures sorted in descending order (no correspondence needed).
    """

    label: str
    origin: str
    sources: tuple[str, ...]
    kind: str
    layout: str
    dtype: str
    shape: tuple[int, ...]
    n_samples: int
    n_dims: int
    rows_at_hand: int
    figures: dict[str, Any]
    profiles: dict[str, F64]


@dataclass(frozen=True, slots=True)
class DimTest:
    """Per-dimension results of one two-sample test, with multiplicity-adjusted p-values.

    Attributes
    ----------
    statistic, pvalue, pvalue_adjusted : ndarray of shape (n_dims,)
        NaN where the test did not run (see `reason`).
    method : str
    reason : str or None
        Why the test did not run, for every dimension.
    """

    statistic: F64
    pvalue: F64
    pvalue_adjusted: F64
    method: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DimComparison:
    """Dimension i of an input against dimension i of the baseline (assumes correspondence).

    Attributes
    ----------
    index : ndarray of int
    baseline, value : dict of str to ndarray
        "mean", "std", "kl_marginal", "excess_kurtosis" of shape (n_dims,), "outlier_rate"
        of shape (n_levels, n_dims), and "rate" (posterior KL per dimension) when both
        inputs have it.
    shift : ndarray
        (mean − mean_baseline) / pooled std, pooled std = √((s₀² + s²)/2).
    log_std_ratio : ndarray
        ln(std / std_baseline).
    wasserstein, wasserstein_std : ndarray
        W1 between the two samples of the dimension, in the data's units and over the
        pooled std. NaN without rows.
    ks, mean_test, std_test : DimTest
        Kolmogorov–Smirnov on the rows; without rows, the large-sample z-tests of equal
        means and of equal log-stds from the reports' moments.
    scale_test : DimTest
        Brown–Forsythe test of equal spread on the same rows as KS, corrected together with
        KS (2 · n_dims tests); skipped without rows, where ``std_test`` tests the scale.
    flagged_by_test, flagged_by_effect, moved : ndarray of bool
        moved = flagged_by_test & flagged_by_effect.
    effect_reasons : tuple of tuple of str
        Which effect sizes passed their threshold: "shift", "scale", "distribution", "kl".
    """

    index: NDArray[np.int64]
    baseline: dict[str, F64]
    value: dict[str, F64]
    shift: F64
    log_std_ratio: F64
    wasserstein: F64
    wasserstein_std: F64
    ks: DimTest
    mean_test: DimTest
    std_test: DimTest
    flagged_by_test: NDArray[np.bool_]
    flagged_by_effect: NDArray[np.bool_]
    moved: NDArray[np.bool_]
    effect_reasons: tuple[tuple[str, ...], ...]
    scale_test: DimTest | None = None


@dataclass(frozen=True, slots=True)
class PairComparison:
    """One input compared with the baseline.

    Attributes
    ----------
    input : InputSummary
    changed : bool
        True when any finding has status "warn" (a dimension moved, the global shift or
        scale changed, the joint test rejected, or the dimensions differ).
    findings : tuple of Finding
    summary_deltas : dict
        For every figure: baseline, value, delta (value − baseline), ratio (value / baseline).
    summary_tests : dict of str to TestResult
        Tests of the global shift and scale from the reports' 95% intervals.
    summary_pvalues_adjusted : dict of str to float
        Adjusted p-values of "shift", "scale" and "joint" (one family).
    test : str or None
        Test behind the per-dimension flag: "ks" (rows of both at hand), "moments" (from
        the reports) or None (dimensions not comparable).
    test_rows : tuple of int
        Rows of each input behind the per-dimension KS tests and W1 (0 without rows).
    dims : DimComparison or None
        None when the numbers of dimensions differ.
    dims_note : str
        What the per-dimension comparison assumes, or why it was not made.
    moved_dims : tuple of int
    joint : TestResult
        Two-sample energy test on the standardised joint samples.
    joint_rows : tuple of int
        Rows of each input used by the joint test.
    joint_dims : int
        Dimensions used by the joint test (non-zero pooled variance).
    profiles : dict of str to dict
        Distances between the sorted profiles of baseline and input.
    notes : tuple of str
    """

    input: InputSummary
    changed: bool
    findings: tuple[Finding, ...]
    summary_deltas: dict[str, Any]
    summary_tests: dict[str, TestResult]
    summary_pvalues_adjusted: dict[str, float]
    test: str | None
    test_rows: tuple[int, int]
    dims: DimComparison | None
    dims_note: str
    moved_dims: tuple[int, ...]
    joint: TestResult
    joint_rows: tuple[int, int]
    joint_dims: int
    profiles: dict[str, dict[str, Any]]
    notes: tuple[str, ...]


# ---------------------------------------------------------------------------------------
# One input against the baseline
# ---------------------------------------------------------------------------------------


#: (origin, report, sample rows or None, for conv latents the sample rows at well-separated
#: positions or None)
@dataclass(frozen=True, slots=True)
class Comparison:
    """Inputs compared with a baseline (the first input).

    Attributes
    ----------
    schema_version : int
        ``COMPARE_SCHEMA_VERSION``.
    tool : dict
    created_at : str
    settings : dict
        seed, alpha, correction, test_samples, joint_test_samples, n_permutations, thresholds,
        profile_sigma_level.
    baseline : InputSummary
    comparisons : tuple of PairComparison
        One per other input, in the order given.
    warnings : tuple of str
    reports : tuple of Report
        The full report of every input (not written to JSON).
    """

    schema_version: int
    tool: dict[str, str]
    created_at: str
    settings: dict[str, Any]
    baseline: InputSummary
    comparisons: tuple[PairComparison, ...]
    warnings: tuple[str, ...]
    reports: tuple[Report, ...] = field(default=(), repr=False)

    #: the kind of result the renderer registry files this class under
    render_kind: ClassVar[str] = "comparison"

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as JSON-ready Python values (NaN and ±inf become None)."""
        levels = list(self.baseline.figures["outlier_rate"])
        return {
            "schema_version": self.schema_version,
            "tool": dict(self.tool),
            "created_at": self.created_at,
            "settings": to_jsonable(self.settings),
            "baseline": _input_dict(self.baseline),
            "comparisons": [_pair_dict(c, levels) for c in self.comparisons],
            "warnings": list(self.warnings),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the comparison as JSON text (never NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_text(self, *, width: int = 100, max_dims: int = 64) -> str:
        """Return the comparison as text for a terminal `width` columns wide."""
        return render(self, "text", width=width, max_dims=max_dims)

    def to_metrics(self, prefix: str = "latents/") -> dict[str, float]:
        """Return the headline figures as a flat dict for trackers (see ``metrics``)."""
        from ..metrics import comparison_metrics

        return comparison_metrics(self, prefix)

    def to_markdown(self, *, max_dims: int = 64) -> str:
        """Return the comparison as Markdown (for pull-request comments)."""
        return render(self, "markdown", max_dims=max_dims)


def _input_dict(s: InputSummary) -> dict[str, Any]:
    """Return the JSON form of one input."""
    out = to_jsonable({f: getattr(s, f) for f in InputSummary.__slots__})
    assert isinstance(out, dict)
    return out


def _test_dict(t: TestResult, adjusted: float | None = None) -> dict[str, Any]:
    """Return the JSON form of a test result with its adjusted p-value."""
    out = to_jsonable(t)
    out["pvalue_adjusted"] = to_jsonable(adjusted) if adjusted is not None else None
    return dict(out)


def _dim_records(dc: DimComparison, levels: list[str]) -> list[dict[str, Any]]:
    """Return one JSON object per dimension."""
    records = []
    for j in range(dc.index.size):
        rec: dict[str, Any] = {"index": int(dc.index[j])}
        for name in dc.baseline:
            b, v = dc.baseline[name], dc.value[name]
            if name == "outlier_rate":
                rec[name] = {
                    k: {"baseline": b[i, j], "value": v[i, j], "delta": v[i, j] - b[i, j]}
                    for i, k in enumerate(levels)
                }
            else:
                rec[name] = {"baseline": b[j], "value": v[j], "delta": v[j] - b[j]}
        rec.update(
            shift=dc.shift[j],
            log_std_ratio=dc.log_std_ratio[j],
            wasserstein=dc.wasserstein[j],
            wasserstein_std=dc.wasserstein_std[j],
        )
        for name in ("ks", "mean_test", "std_test", "scale_test"):
            t: DimTest | None = getattr(dc, name)
            if t is None:
                continue
            rec[name] = {
                "statistic": t.statistic[j],
                "pvalue": t.pvalue[j],
                "pvalue_adjusted": t.pvalue_adjusted[j],
            }
        rec.update(
            flagged_by_test=bool(dc.flagged_by_test[j]),
            flagged_by_effect=bool(dc.flagged_by_effect[j]),
            effect_reasons=list(dc.effect_reasons[j]),
            moved=bool(dc.moved[j]),
        )
        records.append(to_jsonable(rec))
    return records


def _pair_dict(c: PairComparison, levels: list[str]) -> dict[str, Any]:
    """Return the JSON form of one comparison."""
    dim_tests = {}
    if c.dims is not None:
        for name in ("ks", "mean_test", "std_test", "scale_test"):
            t = getattr(c.dims, name)
            if t is None:
                continue
            dim_tests[name] = {"method": t.method or None, "reason": t.reason}
    joint = _test_dict(c.joint, c.summary_pvalues_adjusted["joint"])
    joint.update(n_rows=list(c.joint_rows), n_dims_used=c.joint_dims)
    return {
        "input": _input_dict(c.input),
        "changed": c.changed,
        "findings": to_jsonable(c.findings),
        "moved_dims": list(c.moved_dims),
        "assumes_correspondence": c.dims is not None,
        "dims_note": c.dims_note,
        "test": c.test,
        "test_rows": list(c.test_rows),
        "dim_tests": dim_tests,
        "summary_deltas": to_jsonable(c.summary_deltas),
        "summary_tests": {
            name: _test_dict(t, c.summary_pvalues_adjusted[name])
            for name, t in c.summary_tests.items()
        },
        "joint": joint,
        "dims": [] if c.dims is None else _dim_records(c.dims, levels),
        "profiles": to_jsonable(c.profiles),
        "notes": list(c.notes),
    }
