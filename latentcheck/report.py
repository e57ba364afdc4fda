"""Frozen result objects of latentcheck and their JSON form.

Every statistic is computed elsewhere and stored here at full precision; the renderers only
read these objects. ``to_dict()`` keeps field order as key order, turns numpy values into
Python values and NaN/±inf into ``null``; ``from_dict()`` reads such a dict back (unknown
keys are ignored), which is how ``compare`` reads saved reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import SchemaError

# SCHEMA_VERSION history (one line per bump):
# 1: first release: input, settings, summary, dims, joint, posterior, warnings.
# 2: conv latents' dims[*].tests and joint.tests on rows at separated positions; findings
#    with code and dims by effect-size rules; corrected scale_ci, Mardia kurtosis, Royston,
#    energy, Mahalanobis and MCD expectations; sample_checks, settings.mode, MI bounds.
SCHEMA_VERSION = 2

#: Bin edges of ``dims[i].histogram``, in standard deviations from the dimension's mean
#: (0.25 wide from -5 to 5); the histogram adds an underflow and an overflow bin.
HISTOGRAM_EDGES: tuple[float, ...] = tuple(-5.0 + 0.25 * i for i in range(41))
READABLE_SCHEMA_VERSIONS = (1, 2)

F64 = NDArray[np.float64]

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "Dims",
    "Finding",
    "InputInfo",
    "Joint",
    "Report",
    "Settings",
    "Summary",
    "TestResult",
    "mi_ceiling",
    "to_jsonable",
]


@dataclass(frozen=True, slots=True)
class TestResult:
    """Outcome of one hypothesis test.

    Attributes
    ----------
    statistic : float
        The test statistic, as the reference implementation defines it. NaN when the test
        was skipped.
    pvalue : float
        The p-value under the test's null hypothesis. NaN when the test was skipped.
    df : float or None
        Degrees of freedom of the reference distribution, where there is one.
    effect_size : float or None
        A scale-free size of the departure from the null (defined per test).
    method : str or None
        How the p-value was obtained, in words (e.g. "chi2 approximation").
    reason : str or None
        Why the test was skipped (statistic and p-value are NaN then).
    """

    __test__ = False  # not a pytest test class

    statistic: float
    pvalue: float
    df: float | None = None
    effect_size: float | None = None
    method: str | None = None
    reason: str | None = None

    @classmethod
    def skipped(cls, reason: str) -> TestResult:
        """Return a result that records why a test did not run."""
        return cls(statistic=math.nan, pvalue=math.nan, reason=reason)


@dataclass(frozen=True, slots=True)
class InputInfo:
    """What was read and how it was viewed.

    Attributes
    ----------
    sources : tuple of str
        Files (with ``[key]`` for ``.npz`` members) or "array": the analysed rows first,
        then, for posterior inputs, the ``mu`` and the logvar/std/var sources.
    kind : str
        "samples", or "posterior" when posterior parameters were given.
    shape : tuple of int
        Shape of the whole data set (shards concatenated on axis 0).
    dtype : str
        Input dtype (before any upcast).
    layout : str
        The view in words: which axis holds dimensions, what a row is.
    channel_axis : int or None
        Axis holding the dimensions (None when flattened).
    n_rows_total : int
        Rows of the 2-D view, including rows left out.
    n_samples : int
        Rows used by the statistics (rows with non-finite values left out).
    n_dims : int
        Number of dimensions.
    non_finite_rows : int
        Rows left out because they hold NaN or ±inf.
    non_finite_values : tuple of int
        Non-finite values per dimension.
    aggregate : str
        Where the analysed samples come from, in words.
    notes : tuple of str
        Conversions and memory notes.
    """

    sources: tuple[str, ...]
    kind: str
    shape: tuple[int, ...]
    dtype: str
    layout: str
    channel_axis: int | None
    n_rows_total: int
    n_samples: int
    n_dims: int
    non_finite_rows: int
    non_finite_values: tuple[int, ...]
    aggregate: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings the report was computed with (all that changes a number).

    Attributes
    ----------
    seed : int
        Seed of every random choice (the sample of rows, Monte-Carlo tests).
    test_samples : int
        Rows (at most) on which the univariate tests run.
    sample_size : int
        Capacity of the seeded uniform sample of rows (quantiles, negentropy).
    sample_rows : int
        Rows the sample actually holds.
    quantiles_exact : bool
        True when the sample holds every row, so quantiles are exact.
    alpha : float
        Significance level used in the verdict.
    nan_policy : str
        "omit" (rows with non-finite values left out) or "error".
    chunk_rows : int
        Rows per streamed chunk.
    threads : int
        Worker threads used for the passes.
    sigma_levels : tuple of float
        The k of the k-σ outlier rates.
    quantile_levels : tuple of float
        Quantile levels reported per dimension (numpy "linear" method).
    max_joint_dims : int
        Above this many dimensions the O(d²) joint part is skipped.
    entropy_estimator : str
        The negentropy estimator, in words.
    mode : str
        "two-pass" (``analyze``: rates about the final mean and std over all rows) or
        "single-pass" (``Stream``: those rates come from the seeded sample).
    profile : dict or None
        For a report merged from saved profiles (``latentcheck profile``): how many, their
        row ranges, the KLL sketch size and rank error, and which figures are sketch
        estimates (see :mod:`latentcheck.profiles`); None otherwise.
    """

    seed: int
    test_samples: int
    sample_size: int
    sample_rows: int
    quantiles_exact: bool
    alpha: float
    nan_policy: str
    chunk_rows: int
    threads: int
    sigma_levels: tuple[float, ...]
    quantile_levels: tuple[float, ...]
    max_joint_dims: int
    entropy_estimator: str
    mode: str = "two-pass"
    profile: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the verdict.

    Attributes
    ----------
    aspect : str
        "input", "dimensions", "scale", "outliers", "gaussianity", "rate" or
        "normalization" ("joint" in comparisons).
    status : str
        "ok", "note" or "warn".
    text : str
        The finding in words, with its numbers; it names the dimensions in `dims`.
    code : str
        Stable machine name of the rule that produced it (``dead_dims``, ``scale_spread``,
        ``heavy_tails``, ``non_gaussian``, ...; the README lists them). Empty in reports
        saved before codes existed.
    dims : tuple of int
        Indices of the dimensions the finding is about; empty when it is global.
    """

    aspect: str
    status: str
    text: str
    code: str = ""
    dims: tuple[int, ...] = ()


#: I(x;z) within this many nats of ln n (the mixture estimate's ceiling) is a bound, for
#: reports that do not carry the estimator's own regime (`mutual_information_regime`).
MI_CEILING_TOL = 0.1


def mi_ceiling(posterior: dict[str, Any] | None) -> float | None:
    """Return ln n when the posterior's I(x;z) estimate sits at its ceiling ln n, else None.

    The aggregate-posterior mixture estimate over n inputs cannot exceed ln n (Hoffman &
    Johnson 2016, "ELBO surgery"); within ``MI_CEILING_TOL`` nats of it the estimate is a
    lower bound, and its standard error says nothing about the true value.
    """
    if not posterior or posterior.get("mutual_information") is None:
        return None
    est = posterior.get("estimator") or {}
    n_mix = est.get("n_mixture") if isinstance(est, dict) else None
    if not n_mix or int(n_mix) < 2:
        return None
    ceiling = math.log(int(n_mix))
    if posterior.get("mutual_information_regime") == "saturated":
        # the leave-one-out bracket puts the estimate at the ceiling (stats.mixture)
        return ceiling
    mi = float(posterior["mutual_information"])
    return ceiling if mi >= ceiling - MI_CEILING_TOL else None


@dataclass(frozen=True, slots=True)
class Normalization:
    """Latent normalisation constants, from all rows, with 95% confidence intervals.

    Attributes
    ----------
    shift : float
        Mean over all values of all dimensions: the ``shift_factor`` of SD3/FLUX,
        used as ``(z − shift) * scale``.
    scale : float
        1 / (standard deviation over all values about `shift`): ``scaling_factor`` of
        SD3/FLUX, and of Stable Diffusion (``z * scaling_factor``), which uses no shift.
    scale_rms : float
        1 / sqrt(mean of z²): the factor that gives unit second moment *without* a shift.
    per_dim_shift, per_dim_scale : ndarray of shape (n_dims,)
        Per-dimension mean and 1/std (``(z − per_dim_shift) * per_dim_scale``); diffusers'
        ``latents_mean``/``latents_std`` and EDM2's ``raw_mean``/``raw_std`` are
        ``per_dim_shift`` and ``1 / per_dim_scale``.
    shift_ci, scale_ci : tuple of float
        95% confidence intervals (normal approximation; see Notes of ``normalization``).
    per_dim_shift_ci, per_dim_scale_ci : ndarray of shape (n_dims, 2)
    n_rows : int
        Rows the constants come from.
    """

    shift: float
    scale: float
    scale_rms: float
    per_dim_shift: F64
    per_dim_scale: F64
    shift_ci: tuple[float, float]
    scale_ci: tuple[float, float]
    per_dim_shift_ci: F64
    per_dim_scale_ci: F64
    n_rows: int


@dataclass(frozen=True, slots=True)
class Summary:
    """Headline figures and the verdict.

    Attributes
    ----------
    verdict : str
        A few sentences in plain words (the findings joined).
    findings : tuple of Finding
        The verdict, one finding per aspect.
    kl_gauss_sum, negentropy_sum, kl_marginal_sum : float
        Sums over dimensions of the per-dimension figures (nats).
    outlier_rate : dict of str to float
        Fraction of all values beyond k·std of their dimension's mean, pooled over
        dimensions, keyed by k ("3".."6").
    expected_outlier_rate : dict of str to float
        The Gaussian expectation 2Φ(−k).
    outlier_ratio : dict of str to float
        outlier_rate / expected_outlier_rate.
    prior_outlier_rate : dict of str to float
        Fraction of all values with |z| > k (against the prior N(0, 1)).
    dims_rejected : dict of str to int
        Per univariate test, dimensions rejected at `alpha` after the Holm adjustment.
    std_range : tuple of float
        Smallest and largest per-dimension std.
    effective_dims : float
        Participation ratio of the covariance spectrum (NaN if the joint part was skipped).
    normalization : Normalization
    normalization_check : dict or None
        The check of a claimed normalisation (``assume_scale``/``assume_shift``): the
        normalised mean and std, the constants the data needs, and the known mistakes found.
    sample_checks : dict or None
        Duplicated rows and quantised dimensions in the seeded sample (see
        :func:`latentcheck.stats.duplicates.sample_checks`).
    """

    verdict: str
    findings: tuple[Finding, ...]
    kl_gauss_sum: float
    negentropy_sum: float
    kl_marginal_sum: float
    outlier_rate: dict[str, float]
    expected_outlier_rate: dict[str, float]
    outlier_ratio: dict[str, float]
    prior_outlier_rate: dict[str, float]
    dims_rejected: dict[str, int]
    std_range: tuple[float, float]
    effective_dims: float
    normalization: Normalization
    normalization_check: dict[str, Any] | None = None
    sample_checks: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UnivariateTest:
    """Per-dimension result arrays of one univariate test (see ``stats.normality``)."""

    statistic: F64
    pvalue: F64
    pvalue_holm: F64
    reason: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Dims:
    """Per-dimension statistics, stored by column; JSON holds one object per dimension.

    Attributes
    ----------
    index : ndarray of int
    count : ndarray of int
        Rows used per dimension.
    mean, std, min, max, skewness, excess_kurtosis : ndarray of shape (n_dims,)
        Over all rows used; std with ddof=0; skewness g1 and excess kurtosis g2 are the
        biased moment ratios (scipy.stats.skew / kurtosis defaults).
    quantiles : ndarray of shape (n_levels, n_dims)
        numpy "linear" quantiles at ``Settings.quantile_levels``.
    kl_gauss, negentropy, kl_marginal : ndarray of shape (n_dims,)
        Moment-matched KL to N(0, 1), negentropy, and their sum (nats).
    outlier_rate, expected_outlier_rate, prior_outlier_rate : ndarray of shape (n_levels, n_dims)
        Fraction of rows beyond mean ± k·std; the Gaussian expectation 2Φ(−k); the fraction
        with |z| > k.
    tests : dict of str to UnivariateTest
    degenerate : ndarray of bool
        Zero or near-zero variance (left out of joint statistics and tests).
    histogram : ndarray of int of shape (n_dims, n_bins + 2) or None
        Counts of the seeded sample's standardised values (z − mean)/std in the bins of
        ``HISTOGRAM_EDGES``, with one underflow and one overflow bin at the ends.
    """

    index: NDArray[np.int64]
    count: NDArray[np.int64]
    mean: F64
    std: F64
    min: F64
    max: F64
    quantiles: F64
    skewness: F64
    excess_kurtosis: F64
    kl_gauss: F64
    negentropy: F64
    kl_marginal: F64
    outlier_rate: F64
    prior_outlier_rate: F64
    tests: dict[str, UnivariateTest]
    degenerate: NDArray[np.bool_]
    histogram: NDArray[np.int64] | None = None


@dataclass(frozen=True, slots=True)
class Joint:
    """Joint statistics over the non-degenerate dimensions.

    Attributes
    ----------
    skipped : str or None
        Why the joint part did not run (then every figure is NaN).
    n_dims_used : int
    dims_excluded : tuple of (int, str)
        Dimensions left out, each with its reason.
    kl_gauss : float
        KL(N(m, S) ‖ N(0, I)) of the Gaussian fit (nats).
    kl_gauss_dims : float
        Σ kl_gauss over the dimensions used (nats).
    total_correlation : float
        Gaussian total correlation −½ ln det R (nats); kl_gauss = kl_gauss_dims + this.
    effective_dims : float
    condition_number : float
    eigenvalues : ndarray
        Covariance eigenvalues, descending.
    top_pairs : tuple of (int, int, float)
        Most correlated pairs (i, j, Pearson r).
    tests : dict of str to TestResult
        Multivariate normality tests and tests against the prior, keyed by name.
    mahalanobis : dict or None
        Squared Mahalanobis distances against χ²_d over all rows: outlier rates and the
        top rows.
    mcd : dict or None
        Robust (MinCovDet) distances on the sample: outlier rate and top rows.
    """

    skipped: str | None
    n_dims_used: int
    dims_excluded: tuple[tuple[int, str], ...]
    kl_gauss: float
    kl_gauss_dims: float
    total_correlation: float
    effective_dims: float
    condition_number: float
    eigenvalues: F64
    top_pairs: tuple[tuple[int, int, float], ...]
    tests: dict[str, TestResult] = field(default_factory=dict)
    mahalanobis: dict[str, Any] | None = None
    mcd: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything latentcheck found about one data set of latents.

    Attributes
    ----------
    schema_version : int
    tool : dict
        Name and version of the tool.
    created_at : str
        ISO 8601 time (UTC).
    input : InputInfo
    settings : Settings
    summary : Summary
    dims : Dims
    joint : Joint
    spatial : dict or None
        Conv latents only: spatial autocorrelation, effective sample size, per-position maps,
        and the univariate tests on well-separated positions.
    posterior : dict or None
        Posterior-parameter statistics, when given.
    warnings : tuple of str
    """

    schema_version: int
    tool: dict[str, str]
    created_at: str
    input: InputInfo
    settings: Settings
    summary: Summary
    dims: Dims
    joint: Joint
    spatial: dict[str, Any] | None
    posterior: dict[str, Any] | None
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready Python values (NaN and ±inf become None)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dims":
                out["dims"] = dims_to_records(value, self.settings)
            else:
                out[f.name] = to_jsonable(value)
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the report as JSON text (never NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_text(self, *, width: int = 100, max_dims: int = 64, precision: int = 3) -> str:
        """Return the report as text for a terminal `width` columns wide."""
        from .render.textreport import render_report

        return render_report(self, width=width, max_dims=max_dims, precision=precision)

    def __repr__(self) -> str:
        inp = self.input
        warns = sum(f.status == "warn" for f in self.summary.findings)
        return (
            f"<Report: {', '.join(inp.sources)}; {inp.n_samples} rows x {inp.n_dims} dims; "
            f"{warns} warn finding(s)>"
        )

    def __str__(self) -> str:
        """Return a short summary: what was read, and the verdict (``print(report)``)."""
        from .render.textreport import render_verdict

        inp = self.input
        head = f"latentcheck report: {', '.join(inp.sources)} ({inp.n_samples} rows x "
        head += f"{inp.n_dims} dims)\n"
        return head + render_verdict(self) + "Full report: report.to_text(); JSON: to_json().\n"

    def _repr_html_(self) -> str:
        """Return the verdict as a small HTML block for notebooks (no plots)."""
        import html

        inp = self.input
        icon = {"ok": "&#9989;", "note": "&#8505;&#65039;", "warn": "&#9888;&#65039;"}
        items = "".join(
            f"<li>{icon.get(f.status, '')} {html.escape(f.text)}"
            + (f" <code>{html.escape(f.code)}</code>" if f.code else "")
            + "</li>"
            for f in self.summary.findings
        )
        return (
            f"<div><b>latentcheck report</b>: <code>{html.escape(', '.join(inp.sources))}</code>"
            f" ({inp.n_samples} rows &times; {inp.n_dims} dims)<ul>{items}</ul></div>"
        )

    def to_metrics(self, prefix: str = "latents/") -> dict[str, float]:
        """Return the headline figures as a flat dict for trackers (see ``metrics``)."""
        from .metrics import report_metrics

        return report_metrics(self, prefix)

    def to_markdown(self, *, max_dims: int = 64) -> str:
        """Return the report as Markdown (for pull-request comments)."""
        from .render.markdownreport import render_report

        return render_report(self, max_dims=max_dims)

    def to_html(self, *, max_dims: int = 64) -> str:
        """Return the report as one self-contained HTML page with plots (needs matplotlib)."""
        from .render.htmlreport import render_report

        return render_report(self, max_dims=max_dims)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output (e.g. a saved JSON report).

        Raises
        ------
        SchemaError
            If the data is not a latentcheck report of a schema version this version reads.
        """
        return report_from_dict(data)


# ---------------------------------------------------------------------------------------
# JSON conversion
# ---------------------------------------------------------------------------------------


def _clean_float(x: float) -> float | None:
    """Return x, or None for NaN and ±inf."""
    return x if math.isfinite(x) else None


def to_jsonable(value: Any) -> Any:
    """Return `value` as JSON-ready Python values (dataclasses as dicts, NaN as None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _clean_float(float(value))
    return value


def level_key(level: float) -> str:
    """Return the JSON key of a level: "3" for 3.0, "0.001" for 0.001."""
    return f"{level:g}" if level != int(level) else str(int(level))


def dims_to_records(dims: Dims, settings: Settings) -> list[dict[str, Any]]:
    """Return one JSON object per dimension."""
    qkeys = [level_key(q) for q in settings.quantile_levels]
    kkeys = [level_key(k) for k in settings.sigma_levels]
    expected = [math.erfc(k / math.sqrt(2.0)) for k in settings.sigma_levels]
    records = []
    for j in range(dims.index.shape[0]):
        rate = {k: _clean_float(float(dims.outlier_rate[i, j])) for i, k in enumerate(kkeys)}
        ratio = {
            k: _clean_float(float(dims.outlier_rate[i, j] / expected[i]))
            for i, k in enumerate(kkeys)
        }
        rec: dict[str, Any] = {
            "index": int(dims.index[j]),
            "count": int(dims.count[j]),
            "mean": _clean_float(float(dims.mean[j])),
            "std": _clean_float(float(dims.std[j])),
            "min": _clean_float(float(dims.min[j])),
            "max": _clean_float(float(dims.max[j])),
            "quantiles": {
                k: _clean_float(float(dims.quantiles[i, j])) for i, k in enumerate(qkeys)
            },
            "skewness": _clean_float(float(dims.skewness[j])),
            "excess_kurtosis": _clean_float(float(dims.excess_kurtosis[j])),
            "kl_gauss": _clean_float(float(dims.kl_gauss[j])),
            "negentropy": _clean_float(float(dims.negentropy[j])),
            "kl_marginal": _clean_float(float(dims.kl_marginal[j])),
            "outlier_rate": rate,
            "outlier_ratio": ratio,
            "prior_outlier_rate": {
                k: _clean_float(float(dims.prior_outlier_rate[i, j])) for i, k in enumerate(kkeys)
            },
            "degenerate": bool(dims.degenerate[j]),
            **(
                {"histogram": [int(c) for c in dims.histogram[j]]}
                if dims.histogram is not None
                else {}
            ),
            "tests": {
                name: {
                    "statistic": _clean_float(float(t.statistic[j])),
                    "pvalue": _clean_float(float(t.pvalue[j])),
                    "pvalue_holm": _clean_float(float(t.pvalue_holm[j])),
                    **({"reason": t.reason[j]} if t.reason[j] else {}),
                }
                for name, t in dims.tests.items()
            },
        }
        records.append(rec)
    return records


def _nan(x: Any) -> float:
    """Return x as float, None as NaN."""
    return math.nan if x is None else float(x)


def _arr(values: Any, dtype: Any = np.float64) -> NDArray[Any]:
    """Return a list (with None for NaN) as an array."""
    if dtype is np.float64:
        return np.array([_nan(v) for v in values], dtype=np.float64) if values else np.empty(0)
    return np.asarray(values, dtype=dtype)


def _from_hints(cls: Any, data: Any) -> Any:
    """Build dataclass `cls` from a dict by its type hints (nested dataclasses, arrays)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise SchemaError(f"Saved report lacks the key {cls.__name__}.{f.name}")
        kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    """Convert a JSON value to the Python value a type hint describes."""
    if value is None:
        if hint is float:
            return math.nan
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value) if len(non_none) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _from_hints(hint, value)
    if hint is float:
        return float(value)
    if hint is int:
        return int(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=False))
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if origin is np.ndarray or hint is F64 or "ndarray" in str(hint):
        arr = np.array(value if not _has_none(value) else _none_to_nan(value), dtype=np.float64)
        return arr
    return value


def _has_none(value: Any) -> bool:
    """Return True if a nested list holds None."""
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return value is None


def _none_to_nan(value: Any) -> Any:
    """Return a nested list with None replaced by NaN."""
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return math.nan if value is None else value


def records_to_dims(records: list[dict[str, Any]], settings: Settings) -> Dims:
    """Rebuild the columnar :class:`Dims` from one JSON object per dimension."""
    qkeys = [level_key(q) for q in settings.quantile_levels]
    kkeys = [level_key(k) for k in settings.sigma_levels]

    def col(name: str) -> F64:
        return _arr([r.get(name) for r in records])

    def table(name: str, keys: list[str]) -> F64:
        if not records:
            return np.empty((len(keys), 0))
        return np.array(
            [[_nan(r.get(name, {}).get(k)) for r in records] for k in keys], dtype=np.float64
        )

    names = list(records[0].get("tests", {})) if records else []
    tests = {
        name: UnivariateTest(
            statistic=_arr([r["tests"][name].get("statistic") for r in records]),
            pvalue=_arr([r["tests"][name].get("pvalue") for r in records]),
            pvalue_holm=_arr([r["tests"][name].get("pvalue_holm") for r in records]),
            reason=tuple(r["tests"][name].get("reason") for r in records),
        )
        for name in names
    }
    return Dims(
        index=np.array([r["index"] for r in records], dtype=np.int64),
        count=np.array([r.get("count", 0) for r in records], dtype=np.int64),
        mean=col("mean"),
        std=col("std"),
        min=col("min"),
        max=col("max"),
        quantiles=table("quantiles", qkeys),
        skewness=col("skewness"),
        excess_kurtosis=col("excess_kurtosis"),
        kl_gauss=col("kl_gauss"),
        negentropy=col("negentropy"),
        kl_marginal=col("kl_marginal"),
        outlier_rate=table("outlier_rate", kkeys),
        prior_outlier_rate=table("prior_outlier_rate", kkeys),
        tests=tests,
        degenerate=np.array([bool(r.get("degenerate", False)) for r in records], dtype=bool),
        histogram=(
            np.array([r["histogram"] for r in records], dtype=np.int64)
            if records and all("histogram" in r for r in records)
            else None
        ),
    )


def report_from_dict(data: dict[str, Any]) -> Report:
    """Rebuild a :class:`Report` from its dict form; see :meth:`Report.from_dict`."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise SchemaError("This is not a latentcheck report: it has no `schema_version`")
    version = data["schema_version"]
    if version not in READABLE_SCHEMA_VERSIONS:
        raise SchemaError(
            f"The report has schema_version {version!r}; this latentcheck reads "
            f"{', '.join(str(v) for v in READABLE_SCHEMA_VERSIONS)}"
        )
    try:
        settings = _from_hints(Settings, data["settings"])
        return Report(
            schema_version=int(version),
            tool=dict(data.get("tool", {})),
            created_at=str(data.get("created_at", "")),
            input=_from_hints(InputInfo, data["input"]),
            settings=settings,
            summary=_from_hints(Summary, data["summary"]),
            dims=records_to_dims(data["dims"], settings),
            joint=_from_hints(Joint, data["joint"]),
            spatial=data.get("spatial"),
            posterior=data.get("posterior"),
            warnings=tuple(data.get("warnings", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SchemaError(f"The saved report is malformed ({type(exc).__name__}: {exc})") from None
