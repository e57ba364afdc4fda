"""``compare``: two or more data sets of latents, or saved reports, side by side.

Each input is analysed (or read from a saved JSON report); every other input is compared
with the first, the baseline: summary figures and their deltas, per-dimension deltas and
two-sample tests when the dimensions correspond, a joint two-sample energy test, and sorted
profiles that need no correspondence. This module reads the inputs, assembles the
:class:`Comparison`; the comparison of one input with the baseline is in
``_compare_pairs.py``, the result types and their JSON form in ``model/comparison.py`` (the
types are importable from here), the two-sample statistics in ``stats/twosample.py``, the text
and Markdown renderers in ``render/comparetext.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import validation as v
from ..analysis.api import Analysis, analyze_with_sample
from ..engine.segments import MERGE_FANOUT
from ..errors import FormatError, InputError, LatentcheckWarning, SchemaError
from ..io.remote import with_storage_options
from ..model.base import clean_float, created_at
from ..model.comparison import COMPARE_SCHEMA_VERSION as COMPARE_SCHEMA_VERSION
from ..model.comparison import Comparison as Comparison
from ..model.comparison import DimComparison as DimComparison
from ..model.comparison import DimTest as DimTest
from ..model.comparison import InputSummary as InputSummary
from ..model.comparison import PairComparison as PairComparison
from ..model.report import Report, level_key
from ..options import (
    COMPARE_OPTIONS,
    COMPARE_OWN,
    DIM_TEST_SAMPLES,
    AnalysisOptions,
    CompareOptions,
    document,
)
from .pairs import DIM_FIELDS as DIM_FIELDS
from .pairs import JOINT_WORK_BUDGET as JOINT_WORK_BUDGET
from .pairs import Loaded as Loaded
from .pairs import compare_pair, floats

__all__ = [
    "COMPARE_SCHEMA_VERSION",
    "Comparison",
    "DimComparison",
    "DimTest",
    "InputSummary",
    "PairComparison",
    "Posterior",
    "compare",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class Posterior:
    """One ``compare`` input given as posterior parameters q(z|x) = N(mu, diag sigma²).

    `mu` with exactly one of `logvar`, `std`, `var` (arrays, paths or globs, or sequences
    of them, as :func:`~latentcheck.analyze` takes them), and optionally samples `z`; the
    input is analysed as ``analyze(z, mu=mu, logvar=logvar, ...)`` would, so its
    comparison carries the posterior figures (rate, active units, rate per dimension).
    The dict ``{"mu": ..., "logvar": ...}`` is the same input.

    Examples
    --------
    >>> import numpy as np
    >>> import latentcheck as lc
    >>> rng = np.random.default_rng(0)
    >>> mu = rng.standard_normal((2000, 3))
    >>> a = lc.Posterior(mu, logvar=np.full((2000, 3), -2.0))
    >>> b = {"mu": mu, "logvar": np.full((2000, 3), -3.0)}
    >>> cmp = lc.compare(a, b, seed=0, n_permutations=0)
    >>> cmp.comparisons[0].summary_deltas["rate_nats"]["delta"] > 0
    True
    """

    mu: Any
    logvar: Any = None
    std: Any = None
    var: Any = None
    z: Any = None


#: the keys of a dict read as a Posterior
POSTERIOR_KEYS = frozenset(f.name for f in dataclasses.fields(Posterior))


#: the defaults of every option, as :class:`CompareOptions` defines them
COMPARE_DEFAULTS = CompareOptions()
#: compare's keyword options, in its signature's order
COMPARE_KEYWORDS = (*COMPARE_OWN, "key", "channel_axis", "flatten")


@document(
    COMPARE_OPTIONS,
    COMPARE_KEYWORDS,
    docs={
        "seed": "Seed of the analyses and of the permutations; None draws one (written out).",
        "alpha": "Level of every test, after the correction.",
    },
)
@with_storage_options
def compare(
    *inputs: Any,
    seed: int | None = COMPARE_DEFAULTS.seed,
    alpha: float = COMPARE_DEFAULTS.alpha,
    correction: str = COMPARE_DEFAULTS.correction,
    dim_test_samples: int = COMPARE_DEFAULTS.dim_test_samples,
    joint_test_samples: int = COMPARE_DEFAULTS.joint_test_samples,
    n_permutations: int = COMPARE_DEFAULTS.n_permutations,
    min_shift: float = COMPARE_DEFAULTS.min_shift,
    min_log_std_ratio: float = COMPARE_DEFAULTS.min_log_std_ratio,
    min_wasserstein: float = COMPARE_DEFAULTS.min_wasserstein,
    min_kl_delta: float = COMPARE_DEFAULTS.min_kl_delta,
    relation: str = COMPARE_DEFAULTS.relation,
    key: str | None = COMPARE_DEFAULTS.key,
    channel_axis: int = COMPARE_DEFAULTS.channel_axis,
    flatten: bool = COMPARE_DEFAULTS.flatten,
    options: CompareOptions | None = None,
    test_samples: int | None = None,
    **analysis_options: Any,
) -> Comparison:
    """Compare data sets of latents (or saved reports) with the first one, the baseline.

    Parameters
    ----------
    *inputs : ndarray, path, sequence of paths, Posterior, Report, dict, Analysis or ``.json`` path
        Two or more. Latents (anything :func:`~latentcheck.analyze` takes, including
        posterior ``.npz`` files) and posteriors (:class:`Posterior`, or a dict with the
        keys ``mu`` and ``logvar``, ``std`` or ``var``, and optionally ``z``) are
        analysed with the seeded sample of rows kept; a
        Report, its dict form or a ``.json`` file saved by ``latentcheck report`` is read
        as it is (no rows, so no two-sample tests on rows for it).
    {options}
    options : CompareOptions or None, default=None
        All the options at once (validated when it was made); keyword options given
        with a value other than their default replace its fields.
    test_samples : int or None, default=None
        Deprecated name of `dim_test_samples` (a FutureWarning); it meant the univariate
        tests' rows in :func:`~latentcheck.analyze`, a different thing.
    **analysis_options
        The other options of :func:`~latentcheck.analyze` (all but ``test_samples``),
        for the analysis of each latent input; see :class:`CompareOptions`.
        ``storage_options=`` (fsspec options for remote paths) applies to every input;
        ``executor=`` (a ``concurrent.futures.Executor``) runs their passes as tasks on
        it, and ``merge_fanout=`` sets their merge tree, as in :func:`~latentcheck.analyze`.

    Returns
    -------
    Comparison

    Raises
    ------
    InputError
        Fewer than two inputs, bad parameters, bad latents.
    FormatError
        Unreadable files.
    SchemaError
        A saved report of a schema version this version does not read.

    Notes
    -----
    A dimension *moved* when a test and an effect size both say so. The test: two-sample
    Kolmogorov–Smirnov on the rows or, when an input is a saved report, z-tests of equal
    means and of equal log-stds from the moments (:func:`~latentcheck.stats.twosample.
    moment_tests`), corrected across the dimensions of the comparison. The effect: at
    least one of |Δmean|/σ_p ≥ `min_shift`, |ln(s/s₀)| ≥ `min_log_std_ratio`,
    W1/σ_p ≥ `min_wasserstein`, |Δkl_marginal| ≥ `min_kl_delta`, with
    σ_p = √((s₀² + s²)/2). Requiring both keeps a trivial change found by a test on 10⁵
    rows from being flagged, and a large effect seen in 100 noisy rows; under the null the
    rate of any flagged dimension stays at most `alpha` (Holm). The global shift and scale
    (:func:`~latentcheck.stats.twosample.global_tests`) and the joint energy test
    (:func:`~latentcheck.stats.twosample.energy_two_sample`, on rows standardised by the
    pooled std) form a second family of three tests per comparison.

    References
    ----------
    .. [1] Székely, G. J., Rizzo, M. L. (2013). Energy statistics: a class of statistics
       based on distances. J. Stat. Plan. Inference 143(8), 1249-1272.
       :doi:`10.1016/j.jspi.2013.03.018`
    .. [2] Holm, S. (1979). A simple sequentially rejective multiple test procedure.
       Scand. J. Statist. 6, 65-70.

    Examples
    --------
    >>> import numpy as np
    >>> import latentcheck as lc
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((5000, 4))
    >>> b = rng.standard_normal((5000, 4)) * [1.0, 1.0, 1.0, 1.5]
    >>> cmp = lc.compare(a, b, seed=0)
    >>> cmp.comparisons[0].moved_dims
    (3,)
    """
    if len(inputs) < 2:
        raise InputError(f"`compare` needs at least 2 inputs, got {len(inputs)}")
    given = {name: value for name, value in locals().items() if name in COMPARE_KEYWORDS}
    if test_samples is not None:
        given["dim_test_samples"] = _deprecated_test_samples(test_samples, dim_test_samples)
    executor = analysis_options.pop("executor", None)
    merge_fanout = analysis_options.pop("merge_fanout", MERGE_FANOUT)
    opts = CompareOptions.merged(options, {**given, **analysis_options})
    seed_used = v.draw_seed() if opts.seed is None else opts.seed
    analysis = opts.analysis(seed_used)
    objs = [_as_posterior(o) for o in inputs]
    for obj in objs:  # mismatched posterior parameters are refused before any analysis
        if isinstance(obj, Posterior):
            _check_posterior(obj, analysis)
    from ..engine.executor import use_executor

    # the inputs' passes run on it (settings.engine and merge_fanout say so)
    with use_executor(executor, merge_fanout=merge_fanout):
        loaded = [_read_input(obj, analysis) for obj in objs]
    base_rep = loaded[0][1]
    k4 = 1 if len(base_rep.settings.sigma_levels) > 1 else 0
    level = level_key(base_rep.settings.sigma_levels[k4])
    summaries = [
        _summarise(_label(i), origin, rep, sample, level)
        for i, (origin, rep, sample, _) in enumerate(loaded)
    ]
    settings = {
        "seed": seed_used,
        "alpha": opts.alpha,
        "correction": opts.correction,
        "test_samples": opts.dim_test_samples,
        "joint_test_samples": opts.joint_test_samples,
        "n_permutations": opts.n_permutations,
        "thresholds": opts.thresholds,
        "flag_rule": "moved = flagged by the corrected test AND by at least one effect size",
        "profile_sigma_level": level,
        "relation": opts.relation,
        "relation_note": RELATIONS[opts.relation],
    }
    messages = [
        f"{s.label}: {w}"
        for s, (_, rep, _, _) in zip(summaries, loaded, strict=True)
        for w in rep.warnings
    ]
    pairs = []
    for k in range(1, len(loaded)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LatentcheckWarning)
            pair = compare_pair(loaded[0], loaded[k], summaries[0], summaries[k], k, settings)
        for w in caught:
            if issubclass(w.category, LatentcheckWarning):
                messages.append(f"{summaries[k].label} vs A: {w.message}")
                warnings.warn(str(w.message), w.category, stacklevel=2)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        pairs.append(_by_relation(pair, opts.relation))
    from .. import __version__

    return Comparison(
        schema_version=COMPARE_SCHEMA_VERSION,
        tool={"name": "latentcheck", "version": __version__},
        created_at=created_at(),
        settings=settings,
        baseline=summaries[0],
        comparisons=tuple(pairs),
        warnings=tuple(messages),
        reports=tuple(rep for _, rep, _, _ in loaded),
    )


def _deprecated_test_samples(test_samples: int, dim_test_samples: int) -> int:
    """Return the value of compare's deprecated `test_samples`, with a FutureWarning."""
    if dim_test_samples != DIM_TEST_SAMPLES.default:
        raise InputError(
            "Give `dim_test_samples` only: `test_samples` is its deprecated name in `compare`"
        )
    warnings.warn(
        "`test_samples` of `compare` is deprecated: the rows per input of the per-dimension "
        "two-sample tests are now `dim_test_samples` (CLI: --dim-test-samples)",
        FutureWarning,
        stacklevel=4,  # this, compare, its storage-options wrapper, the caller
    )
    return test_samples


#: the inputs' roles, with the sentence each puts once at the top of a comparison
RELATIONS = {
    "same": "The inputs are one model retrained or fine-tuned: dimension j of every input "
    "is the same latent, so per-dimension changes are findings.",
    "unrelated": "The inputs are separately trained models: their dimensions need not "
    "correspond, so per-dimension differences are expected and say little; read the sorted "
    "profiles and the global and joint figures.",
}
CORRESPONDENCE_NOTE = "The dimensions may not correspond"


def _by_relation(pair: PairComparison, relation: str) -> PairComparison:
    """Return `pair` with its findings read for the inputs' `relation`.

    For unrelated models the per-pair note that dimensions may not correspond is dropped
    (``settings.relation_note`` says it once); for one model retrained it points to
    ``relation="unrelated"``.
    """
    keep = []
    for f in pair.findings:
        if f.text.startswith(CORRESPONDENCE_NOTE):
            if relation == "unrelated":
                continue
            f = dataclasses.replace(
                f, text=f.text + " (if they are separately trained, pass --relation unrelated)"
            )
        keep.append(f)
    return dataclasses.replace(pair, findings=tuple(keep))


# ---------------------------------------------------------------------------------------
# Inputs and figures
# ---------------------------------------------------------------------------------------


def _label(i: int) -> str:
    """Return the label of input i: A, B, ..., Z, then I27, I28, ..."""
    return chr(ord("A") + i) if i < 26 else f"I{i + 1}"


def _as_posterior(obj: Any) -> Any:
    """Return a dict of posterior parameters as a Posterior, anything else as it is.

    A dict is a posterior when it has none of a report's keys and one of
    :data:`POSTERIOR_KEYS`; one with other keys or without ``mu`` is refused (before any
    input is analysed).
    """
    if not (isinstance(obj, dict) and "schema_version" not in obj and POSTERIOR_KEYS & set(obj)):
        return obj
    if set(obj) - POSTERIOR_KEYS or "mu" not in obj:
        raise InputError(
            "A posterior input is a dict with the keys mu and one of logvar, std, var "
            f"(and optionally z); got the keys {', '.join(sorted(map(str, obj)))}"
        )
    return Posterior(**obj)


def _check_posterior(post: Posterior, options: AnalysisOptions) -> None:
    """Raise InputError if `post`'s parameters are incomplete or disagree in shape.

    Opens the arrays (headers only for files) as the analysis will, without reading them.
    """
    from ..io.posterior import resolve_inputs

    resolve_inputs(
        post.z,
        mu=post.mu,
        logvar=post.logvar,
        std=post.std,
        var=post.var,
        key=options.key,
        channel_axis=options.channel_axis,
        flatten=options.flatten,
        per_sample=options.per_sample,
    )


def _read_input(obj: Any, options: AnalysisOptions) -> Loaded:
    """Return (origin, report, sample or None, independent rows or None) of one input."""
    if isinstance(obj, Analysis):
        return _loaded("analysis", obj)
    if isinstance(obj, Report):
        return "report", obj, None, None
    if isinstance(obj, Posterior):
        post = {"mu": obj.mu, "logvar": obj.logvar, "std": obj.std, "var": obj.var}
        return _loaded("latents", analyze_with_sample(obj.z, **post, options=options))
    if isinstance(obj, dict):
        return "report", _from_dict(obj, "The dict"), None, None
    if isinstance(obj, (str, os.PathLike)) and os.fspath(obj).lower().endswith(".json"):
        path = os.fspath(obj)
        return "saved report", _from_dict(_load_saved(path), path), None, None
    from ..profiles import analysis_of_profiles, is_profile_input

    if is_profile_input(obj):  # saved profiles (issue 19): their report and sample
        return _loaded("profile", analysis_of_profiles(obj, **options.as_dict()))
    return _loaded("latents", analyze_with_sample(obj, options=options))


def _loaded(origin: str, analysis: Analysis) -> Loaded:
    """Return the Loaded tuple of an analysis.

    Its sample and, for conv latents, the sample rows at well-separated positions
    (independent across the sample, issue 15).
    """
    from ..analysis.spatial import independent_sample

    sample = analysis.sample
    indep = independent_sample(analysis.report, sample, analysis.row_ids)
    return origin, analysis.report, sample, indep


#: Largest saved report read (a report of 100 000 dimensions is about 200 MiB).
MAX_REPORT_BYTES = 1 << 30


def _load_saved(path: str) -> Any:
    """Return the parsed JSON of a saved report, refusing what no report can be (issue 20).

    Not a regular file (a FIFO would block), larger than :data:`MAX_REPORT_BYTES`,
    nested deeper than Python's recursion limit, or not JSON: each a FormatError line.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FormatError(f"File not found: {path}") from None
    except OSError as exc:
        raise FormatError(f"Cannot read {path} ({exc.strerror})") from None
    v.check_regular_file(path)
    if st.st_size > MAX_REPORT_BYTES:
        raise FormatError(
            f"{path} has {st.st_size} bytes, more than a saved report of latentcheck "
            f"({MAX_REPORT_BYTES // 2**20} MiB at most); is it a report?"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise FormatError(f"Cannot read {path} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a JSON report ({exc})") from None
    except RecursionError:
        raise FormatError(f"{path} is not a report: its JSON is nested too deeply") from None


def _from_dict(data: Any, where: str) -> Report:
    """Return the Report of a saved report's dict; SchemaError names `where`.

    Whatever a malformed dict makes the reader raise (a missing key, a value of the
    wrong type, an empty or short ``dims`` list) is a SchemaError naming `where`, never
    a traceback (issue 20).
    """
    if isinstance(data, dict) and "comparisons" in data:
        raise SchemaError(f"{where} holds a saved comparison; compare takes saved reports")
    try:
        rep = Report.from_dict(data)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
        raise SchemaError(
            f"{where} is not a valid latentcheck report ({type(exc).__name__}: {exc})"
        ) from None
    n_dims = rep.input.n_dims
    if rep.dims.index.shape[0] != n_dims or n_dims < 1:
        raise SchemaError(
            f"{where} is not a valid latentcheck report: input.n_dims is {n_dims} but dims "
            f"lists {rep.dims.index.shape[0]} dimensions"
        )
    return rep


def _figures(rep: Report) -> dict[str, Any]:
    """Return the headline figures of a report (None where it does not have one)."""
    sm, jt = rep.summary, rep.joint
    post = rep.posterior
    nz = sm.normalization
    maha = jt.mahalanobis.outlier_rate if jt.mahalanobis is not None else {}
    return {
        "n_samples": rep.input.n_samples,
        "n_dims": rep.input.n_dims,
        "kl_total": sm.kl_marginal_sum + jt.total_correlation,
        "kl_marginal_sum": sm.kl_marginal_sum,
        "kl_gauss_sum": sm.kl_gauss_sum,
        "negentropy_sum": sm.negentropy_sum,
        "total_correlation": jt.total_correlation,
        "kl_joint_gauss": jt.kl_gauss,
        "effective_dims": jt.effective_dims,
        "condition_number": jt.condition_number,
        "std_min": sm.std_range[0],
        "std_max": sm.std_range[1],
        "outlier_rate": dict(sm.outlier_rate),
        "prior_outlier_rate": dict(sm.prior_outlier_rate),
        "mahalanobis_outlier_rate": {str(k): v for k, v in maha.items()},
        "shift": nz.shift,
        "scale": nz.scale,
        "scale_rms": nz.scale_rms,
        "rate_nats": clean_float(post.rate_nats) if post is not None else None,
        "rate_bits": clean_float(post.rate_bits) if post is not None else None,
        "active_units": post.active_units if post is not None else None,
    }


def _outlier_ratio(rep: Report, level: str) -> F64:
    """Return the per-dimension outlier rate at `level` over the Gaussian rate (or empty)."""
    keys = [level_key(k) for k in rep.settings.sigma_levels]
    if level not in keys:
        return np.empty(0)
    return rep.outlier_ratio(keys.index(level))


def _summarise(
    label: str, origin: str, rep: Report, sample: NDArray[Any] | None, level: str
) -> InputSummary:
    """Return the InputSummary (figures and sorted profiles) of one input."""
    eig = np.asarray(rep.joint.eigenvalues, dtype=np.float64)
    share = eig / eig.sum() if eig.size and eig.sum() > 0 else np.empty(0)
    rate = rep.posterior.kl_per_dim if rep.posterior is not None else None
    raw = {
        "kl_marginal": rep.dims.kl_marginal,
        "std": rep.dims.std,
        "excess_kurtosis": rep.dims.excess_kurtosis,
        "outlier_ratio": _outlier_ratio(rep, level),
        "eigenvalue_share": share,
        "rate": floats(rate if rate is not None else []),
    }
    profiles = {}
    for name, values in raw.items():
        values = np.asarray(values, dtype=np.float64)
        profiles[name] = -np.sort(-values[np.isfinite(values)])
    inp = rep.input
    return InputSummary(
        label=label,
        origin=origin,
        sources=tuple(inp.sources),
        kind=inp.kind,
        layout=inp.layout,
        dtype=inp.dtype,
        shape=tuple(inp.shape),
        n_samples=inp.n_samples,
        n_dims=inp.n_dims,
        rows_at_hand=0 if sample is None else int(sample.shape[0]),
        figures=_figures(rep),
        profiles=profiles,
    )


# ---------------------------------------------------------------------------------------
# JSON form
# ---------------------------------------------------------------------------------------
