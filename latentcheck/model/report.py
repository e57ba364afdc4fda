"""Frozen result objects of latentcheck and their JSON form.

Every statistic is computed elsewhere and stored here at full precision; the renderers only
read these objects. ``to_dict()`` keeps field order as key order, turns numpy values into
Python values and NaN/±inf into ``null``; ``from_dict()`` reads such a dict back (unknown
keys are ignored), which is how ``compare`` reads saved reports.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import SchemaError
from ..render.registry import render
from .base import F64 as F64
from .base import Finding as Finding
from .base import Normalization as Normalization
from .base import TestResult as TestResult
from .base import from_jsonable, gaussian_tail_rates, to_jsonable
from .base import level_key as level_key
from .checks import NormalizationCheckBlock as NormalizationCheckBlock
from .checks import SampleChecksBlock as SampleChecksBlock
from .checks import VaeConfigBlock as VaeConfigBlock
from .dims import HISTOGRAM_EDGES as HISTOGRAM_EDGES
from .dims import Dims as Dims
from .dims import UnivariateTest as UnivariateTest
from .dims import dims_to_records, records_to_dims
from .joint import MahalanobisBlock, McdBlock
from .posterior import MI_CEILING_TOL as MI_CEILING_TOL
from .posterior import PosteriorBlock as PosteriorBlock
from .spatial import SpatialBlock as SpatialBlock

# SCHEMA_VERSION history (one line per bump):
# 1: first release: input, settings, summary, dims, joint, posterior, warnings.
# 2: conv latents' dims[*].tests and joint.tests on rows at separated positions; findings
#    with code and dims by effect-size rules; corrected scale_ci, Mardia kurtosis, Royston,
#    energy, Mahalanobis and MCD expectations; sample_checks, settings.mode, MI bounds.
SCHEMA_VERSION = 2

READABLE_SCHEMA_VERSIONS = (1, 2)

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
    "level_key",
    "mi_ceiling",
    "to_jsonable",
]


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
    engine : str
        Where the passes ran: "local" (this process and its workers), "dask" or
        "executor:<class>" for another ``concurrent.futures.Executor`` (issue 19).
    merge_fanout : int, "linear" or None
        Fan-out of the fixed tree along which the passes' segments were merged (see
        :mod:`latentcheck.engine.segments`; "linear": one chain in segment order). The
        figures depend on it at rounding level, on the engine not at all. None for
        reports not made by the engine's passes (``Stream``, merged profiles).
    profile : dict or None
        For a report merged from saved profiles (``latentcheck profile``): how many, their
        row ranges, the t-digest size and its stated and measured errors, and which
        figures are sketch estimates (see :mod:`latentcheck.profiles`); None otherwise.
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
    engine: str = "local"
    merge_fanout: int | str | None = None
    profile: dict[str, Any] | None = None

    @property
    def expected_outlier_rates(self) -> F64:
        """Return the Gaussian share beyond k std, 2Φ(−k) = erfc(k/√2), per sigma level.

        The complementary error function as DLMF 7.2.2 defines it, with Φ(x) =
        erfc(−x/√2)/2 (DLMF 7.17.1's relation to the normal distribution function);
        ``math.erfc`` on each level, the figures ``summary.expected_outlier_rate`` holds.
        """
        return gaussian_tail_rates(self.sigma_levels)

    @property
    def headline_level(self) -> int:
        """Return the index of the sigma level per-dimension tables show (the 2nd, or the 1st)."""
        return 1 if len(self.sigma_levels) > 1 else 0


def mi_ceiling(posterior: PosteriorBlock | None) -> float | None:
    """Return ln n when the posterior's I(x;z) estimate sits at its ceiling ln n, else None.

    See :meth:`PosteriorBlock.mi_ceiling` (Hoffman & Johnson 2016, "ELBO surgery").
    """
    return None if posterior is None else posterior.mi_ceiling()


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
    normalization_check : NormalizationCheckBlock or None
        The check of a claimed normalisation (``assume_scale``/``assume_shift``): the
        normalised mean and std, the constants the data needs, and the known mistakes found.
    sample_checks : SampleChecksBlock or None
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
    normalization_check: NormalizationCheckBlock | None = None
    sample_checks: SampleChecksBlock | None = None

    @property
    def claimed_normalization(self) -> NormalizationCheckBlock | None:
        """Return the check of a claimed normalisation, or None when none was claimed.

        ``normalization_check`` can hold only a ``vae_config`` block (a per-channel config
        checks no global claim); then there is no claim to show.
        """
        check = self.normalization_check
        return check if check is not None and check.has_claim else None


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
    mahalanobis : MahalanobisBlock or None
        Squared Mahalanobis distances against χ²_d over all rows: outlier rates and the
        top rows.
    mcd : McdBlock or None
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
    mahalanobis: MahalanobisBlock | None = None
    mcd: McdBlock | None = None


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
    spatial : SpatialBlock or None
        Conv latents only: spatial autocorrelation, effective sample size, per-position maps,
        and the univariate tests on well-separated positions.
    posterior : PosteriorBlock or None
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
    spatial: SpatialBlock | None
    posterior: PosteriorBlock | None
    warnings: tuple[str, ...]

    #: the kind of result the renderer registry files this class under
    render_kind: ClassVar[str] = "report"

    def outlier_ratio(self, level: int) -> F64:
        """Return each dimension's outlier rate at sigma level `level` over 2Φ(−k).

        `level` indexes ``settings.sigma_levels``; the JSON's ``dims[*].outlier_ratio``.
        """
        expected = self.settings.expected_outlier_rates[level]
        return np.asarray(self.dims.outlier_rate[level] / expected, dtype=np.float64)

    def top_dims(self, max_dims: int) -> NDArray[np.intp]:
        """Return the positions of the dims to show: all, or the `max_dims` largest kl_marginal.

        NaN ranks last, ties keep dimension order; the positions come back sorted.
        """
        dm = self.dims
        d = dm.index.shape[0]
        if d <= max_dims:
            return np.arange(d)
        key = np.where(np.isfinite(dm.kl_marginal), dm.kl_marginal, -np.inf)
        return np.sort(np.argsort(-key, kind="stable")[:max_dims])

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready Python values (NaN and ±inf become None)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dims":
                out["dims"] = dims_to_records(
                    value,
                    quantile_levels=self.settings.quantile_levels,
                    sigma_levels=self.settings.sigma_levels,
                )
            else:
                out[f.name] = to_jsonable(value)
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the report as JSON text (never NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_text(self, *, width: int = 100, max_dims: int = 64, precision: int = 3) -> str:
        """Return the report as text for a terminal `width` columns wide."""
        return render(self, "text", width=width, max_dims=max_dims, precision=precision)

    def __repr__(self) -> str:
        inp = self.input
        warns = sum(f.status == "warn" for f in self.summary.findings)
        return (
            f"<Report: {', '.join(inp.sources)}; {inp.n_samples} rows x {inp.n_dims} dims; "
            f"{warns} warn finding(s)>"
        )

    def __str__(self) -> str:
        """Return a short summary: what was read, and the verdict (``print(report)``)."""
        return render(self, "summary")

    def _repr_html_(self) -> str:
        """Return the verdict as a small HTML block for notebooks (no plots)."""
        return render(self, "notebook")

    def to_metrics(self, prefix: str = "latents/") -> dict[str, float]:
        """Return the headline figures as a flat dict for trackers (see ``metrics``)."""
        from ..metrics import report_metrics

        return report_metrics(self, prefix)

    def to_markdown(self, *, max_dims: int = 64) -> str:
        """Return the report as Markdown (for pull-request comments)."""
        return render(self, "markdown", max_dims=max_dims)

    def to_html(self, *, max_dims: int = 64) -> str:
        """Return the report as one self-contained HTML page with plots (needs matplotlib)."""
        return render(self, "html", max_dims=max_dims)

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
        settings = from_jsonable(Settings, data["settings"])
        return Report(
            schema_version=int(version),
            tool=dict(data.get("tool", {})),
            created_at=str(data.get("created_at", "")),
            input=from_jsonable(InputInfo, data["input"]),
            settings=settings,
            summary=from_jsonable(Summary, data["summary"]),
            dims=records_to_dims(
                data["dims"],
                quantile_levels=settings.quantile_levels,
                sigma_levels=settings.sigma_levels,
            ),
            joint=from_jsonable(Joint, data["joint"]),
            spatial=SpatialBlock.from_dict(data["spatial"]) if data.get("spatial") else None,
            posterior=(
                PosteriorBlock.from_dict(data["posterior"]) if data.get("posterior") else None
            ),
            warnings=tuple(data.get("warnings", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SchemaError(f"The saved report is malformed ({type(exc).__name__}: {exc})") from None
