"""The options of ``analyze`` and ``compare``, each defined once (issue 17, stage 2).

Every option is one :class:`Option`: its name, default, valid range or choices, the CLI flag
and one-line help of ``latentcheck report`` / ``compare``, and the numpydoc text of the
Python docstrings. Two frozen dataclasses are built from them, :class:`AnalysisOptions` and
:class:`CompareOptions`, which share the Option objects of the options both take; creating
one validates every value once, at the boundary (``_validation`` holds the wording). The
keyword signatures of :func:`~latentcheck.analyze` and :func:`~latentcheck.compare` take
their defaults from here, their docstrings' Parameters sections are written from here
(:func:`parameters_doc`), and ``cli.py`` generates its click options from here; the tests
check that none of them drifts.

Options whose default depends on the data (``sample_size``, ``chunk_rows``, ``threads``,
``seed=None``) keep None here; the analysis resolves them once it knows the input.

Longer than 600 lines on purpose: most of it is the table of the 37 options (7-15 lines
each), which is worth keeping in one file.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .errors import InputError

__all__ = [
    "ANALYSIS_OPTIONS",
    "COMPARE_OPTIONS",
    "DEFAULT_SAMPLE_SIZE",
    "SAMPLE_BUDGET",
    "AnalysisOptions",
    "CompareOptions",
    "Option",
    "default_sample_size",
    "document",
    "parameters_doc",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Default capacity of the seeded sample of rows (quantiles, negentropy).
DEFAULT_SAMPLE_SIZE = 100_000
#: Memory the sample may take (bytes); the capacity shrinks for very wide data.
SAMPLE_BUDGET = 64 * 2**20

#: the `cli_default` of an option whose CLI default is its Python default
SAME = "<same>"

# the choices of `nan` and the default sigma levels are those of ``_validation`` (tested)

#: how each kind of option is checked (the messages live in ``_validation``)
KINDS = ("int", "fraction", "nonneg", "scale", "real", "choice", "seed", "levels", "flag", "any")


@dataclass(frozen=True, slots=True)
class Option:
    """One option of ``analyze`` or ``compare``: the single home of its default and help.

    Attributes
    ----------
    name : str
        The Python keyword (and dataclass field).
    default : object
        The default value (None: chosen from the data at run time, see `doc`).
    kind : str
        How values are checked, one of :data:`KINDS`.
    help : str
        The CLI help line.
    doc : str
        The numpydoc description in the Python docstrings.
    type_doc : str
        The numpydoc type ("int", "float or None", ...).
    flag : str or None
        The CLI flag, None for a Python-only option; ``"--on/--off"`` for a tri-state.
    minimum : int or None
        Smallest valid integer (kind "int").
    choices : tuple of str
        Valid values (kind "choice").
    optional : bool
        None is valid too.
    cli_default : object
        The CLI's default where it differs from `default` (``--progress``: None, "when
        stderr is a terminal", where the library shows no bar); else :data:`SAME`.
    """

    name: str
    default: Any
    kind: str
    help: str
    doc: str
    type_doc: str
    flag: str | None = None
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    cli_default: Any = SAME

    def __post_init__(self) -> None:
        if self.kind not in KINDS:  # an internal invariant: options are defined here
            raise ValueError(f"unknown option kind {self.kind!r}")

    def field(self) -> Any:
        """Return the dataclass field of this option (a new one for each class)."""
        return dataclasses.field(default=self.default, metadata={"option": self})

    def check(self, value: Any) -> Any:
        """Return `value` normalised, or raise InputError naming the option."""
        if value is None and self.optional:
            return None
        from . import validation as v  # numpy: not imported by `latentcheck --help`

        name, kind = self.name, self.kind
        if kind == "int":
            assert self.minimum is not None
            return v.check_int(value, name, minimum=self.minimum)
        if kind == "fraction":
            return v.check_fraction(value, name)
        if kind == "nonneg":
            return v.check_positive(value, name)
        if kind == "scale":
            return v.check_strictly_positive(value, name)
        if kind == "real":
            return v.check_real(value, name)
        if kind == "choice":
            return v.check_choice(value, name, self.choices)
        if kind == "seed":
            return v.check_seed_value(value)
        if kind == "levels":
            return v.check_levels(value, name)
        return value  # "flag", "any": read as given (the reader checks keys and axes)

    @property
    def command_default(self) -> Any:
        """The default of the CLI flag."""
        return self.default if self.cli_default == SAME else self.cli_default

    def default_doc(self) -> str:
        """Return the default as numpydoc writes it (``default=0``, ``default="omit"``)."""
        return f"default={self.default!r}".replace("'", '"')


def _o(name: str, default: Any, kind: str, help: str, doc: str, type_doc: str, **kw: Any) -> Option:
    return Option(name, default, kind, help, textwrap.dedent(doc).strip(), type_doc, **kw)


# ---------------------------------------------------------------------------------------
# How to read the inputs (analyze and compare)
# ---------------------------------------------------------------------------------------

KEY = _o(
    "key", None, "any",
    "Array name in .npz/.safetensors/.h5/.zarr/.pt files (group/name if nested).",
    "``.npz`` member to read; by default chosen by name (``z``, ``latents``, ...).",
    "str or None", flag="--key", optional=True,
)  # fmt: skip
CHANNEL_AXIS = _o(
    "channel_axis", 1, "any",
    "Axis holding the channels (dimensions) of 3-D+ arrays.",
    "Axis holding the dimensions for arrays of 3 or more axes.",
    "int", flag="--channel-axis",
)  # fmt: skip
FLATTEN = _o(
    "flatten", False, "flag",
    "Make every element of a sample a dimension (C*H*W dims).",
    "Make every element of a sample a dimension instead.",
    "bool", flag="--flatten",
)  # fmt: skip
PER_SAMPLE = _o(
    "per_sample", None, "flag",
    "Several files: each is one sample, e.g. (C, H, W) [--per-sample], or a batch along axis 0 "
    "[--batch]; by default 3-D files of one shape that look like single samples are refused.",
    """
    Several files, each one sample (e.g. (C, H, W) files): True reads each file as
    one sample (mixed spatial sizes pooled per channel), False as batches along axis
    0; None refuses 3-D files of one shape that look like single samples (see
    :func:`~latentcheck.io.latents.open_latents`).
    """,
    "bool or None", flag="--per-sample/--batch", optional=True,
)  # fmt: skip

# ---------------------------------------------------------------------------------------
# The analysis
# ---------------------------------------------------------------------------------------

SEED = _o(
    "seed", 0, "seed", "Random seed.",
    """
    Seed of the sample of rows and of every Monte-Carlo step; None draws one (the seed
    used is written into the report).
    """,
    "int or None", flag="--seed", optional=True,
)  # fmt: skip
TEST_SAMPLES = _o(
    "test_samples", 5000, "int", "Rows (at most) for the univariate tests.",
    "Rows (at most) on which the univariate tests run.",
    "int", flag="--test-samples", minimum=3,
)  # fmt: skip
SAMPLE_SIZE = _o(
    "sample_size", None, "int",
    "Rows kept in the seeded sample (quantiles, negentropy) [default: 100000 or 64 MiB].",
    """
    Capacity of the seeded sample of rows used for quantiles and negentropy; None means
    100 000 rows or what fits in 64 MiB. Quantiles are exact when it holds every row.
    At least `test_samples`.
    """,
    "int or None", flag="--sample-size", minimum=1, optional=True,
)  # fmt: skip
ALPHA = _o(
    "alpha", 0.05, "fraction", "Test level.",
    "Significance level used in the verdict.",
    "float", flag="--alpha",
)  # fmt: skip
NAN = _o(
    "nan", "omit", "choice", "Leave rows with NaN/inf out, or refuse them.",
    "Leave rows holding NaN or ±inf out (and count them), or refuse such input.",
    '{"omit", "error"}', flag="--nan", choices=("omit", "error"),
)  # fmt: skip
SIGMA_LEVELS = _o(
    "sigma_levels", (3.0, 4.0, 5.0, 6.0), "levels", "",
    "The k of the k-σ outlier rates (sorted, duplicates dropped); None means the default.",
    "sequence of float or None", optional=False,
)  # fmt: skip
TOP_PAIRS = _o(
    "top_pairs", 10, "int", "",
    "How many of the most correlated pairs to list.",
    "int", minimum=0,
)  # fmt: skip
MAX_JOINT_DIMS = _o(
    "max_joint_dims", 2048, "int", "Skip the O(d^2) joint part above this many dims.",
    "Above this many dimensions the O(d²) joint part is skipped (with the reason).",
    "int", flag="--max-joint-dims", minimum=1,
)  # fmt: skip
JOINT_SAMPLES = _o(
    "joint_samples", 5000, "int",
    "Sample rows for Henze-Zirkler, Doornik-Hansen (Royston: <= 2000).",
    """
    Rows of the seeded sample for Henze–Zirkler, Doornik–Hansen (and Mardia's skewness
    when its third-order sums over all rows would cost too much); Royston uses at most
    2000 of them.
    """,
    "int", flag="--joint-samples", minimum=3,
)  # fmt: skip
ENERGY_SAMPLES = _o(
    "energy_samples", 500, "int", "Sample rows for the energy test.",
    "Rows for the energy test (O(n²·d) per replicate).",
    "int", flag="--energy-samples", minimum=3,
)  # fmt: skip
ENERGY_RESAMPLES = _o(
    "energy_resamples", 99, "int", "Monte-Carlo replicates of the energy test.",
    "Monte-Carlo replicates of the energy test's p-value.",
    "int", flag="--energy-resamples", minimum=0,
)  # fmt: skip
MCD_SAMPLES = _o(
    "mcd_samples", 1000, "int",
    "Sample rows for MinCovDet (runs with >= 20 rows per dimension).",
    """
    Rows for the robust (MinCovDet) distances; MCD runs only with at least 20 rows per
    dimension (fewer make its outlier rate unreliable), so by default up to d = 50.
    """,
    "int", flag="--mcd-samples", minimum=3,
)  # fmt: skip
TOP_ROWS = _o(
    "top_rows", 10, "int", "Rows with the largest Mahalanobis distances to list.",
    "How many of the rows with the largest Mahalanobis distances to list.",
    "int", flag="--top-rows", minimum=0,
)  # fmt: skip
ACTIVE_THRESHOLD = _o(
    "active_threshold", 0.01, "nonneg", "Posterior: active unit when Var_x(mu_j) exceeds this.",
    """
    Posterior only: a dimension is an active unit when Var_x(mu_j) exceeds this
    (Burda et al. 2016).
    """,
    "float", flag="--active-threshold",
)  # fmt: skip
COLLAPSE_THRESHOLD = _o(
    "collapse_threshold", 0.01, "nonneg",
    "Posterior: collapsed when the rate is below this (nats).",
    "Posterior only: a dimension is collapsed when its rate is below this (nats).",
    "float", flag="--collapse-threshold",
)  # fmt: skip
MIXTURE_SAMPLES = _o(
    "mixture_samples", 2048, "int", "Posterior: inputs in the mixture estimate of I(x;z).",
    "Posterior only: inputs in the mixture estimate of I(x; z) and KL(q(z) || p(z)).",
    "int", flag="--mixture-samples", minimum=2,
)  # fmt: skip
ASSUME_SCALE = _o(
    "assume_scale", None, "scale",
    "Check a normalisation (z - shift) * scale your pipeline applies.",
    """
    A normalisation ``(z - assume_shift) * assume_scale`` your pipeline applies; the
    report checks it against the data and names known mistakes (inverted factor,
    missing shift, another VAE's constant, per-channel constants needed).
    """,
    "float or None", flag="--assume-scale", optional=True,
)  # fmt: skip
ASSUME_SHIFT = _o(
    "assume_shift", 0.0, "real", "The shift of that normalisation.",
    "The shift of the normalisation checked with `assume_scale`.",
    "float", flag="--assume-shift",
)  # fmt: skip
CHUNK_ROWS = _o(
    "chunk_rows", None, "int", "Rows per chunk.",
    """
    Rows per streamed chunk; None picks about 1 MiB per chunk. Results do not depend
    on it (to rounding).
    """,
    "int or None", flag="--chunk-rows", minimum=1, optional=True,
)  # fmt: skip
THREADS = _o(
    "threads", None, "int",
    "Parallel workers (processes on Linux) [default: the cores, at most 8].",
    """
    Parallel workers for the passes, the caller included; None uses the available
    cores (at most 8). On Linux the extra workers are forked processes (threads
    elsewhere, for small data, and when other Python threads run); see the README's
    Architecture section. The report is the same, bit for bit, for any number.
    """,
    "int or None", flag="--threads", minimum=1, optional=True,
)  # fmt: skip
PROGRESS = _o(
    "progress", False, "flag", "Progress bar on stderr [default: when stderr is a terminal].",
    "Show a progress bar on stderr; None shows one when stderr is a terminal.",
    "bool or None", flag="--progress/--no-progress", optional=True, cli_default=None,
)  # fmt: skip
ALLOW_FEW_ROWS = _o(
    "allow_few_rows", False, "flag",
    "Describe data with fewer rows than dimensions (or than 20 rows) instead of refusing it "
    "as a likely transposed array.",
    """
    Describe data with fewer rows than dimensions, or fewer than 20 rows; refused
    otherwise (usually a transposed array, see ``_validation.check_rows_vs_dims``).
    """,
    "bool", flag="--allow-few-rows",
)  # fmt: skip

# ---------------------------------------------------------------------------------------
# compare's own options
# ---------------------------------------------------------------------------------------

CORRECTION = _o(
    "correction", "holm", "choice",
    "Correction across dimensions: Holm (family-wise) or Benjamini-Hochberg (FDR).",
    """
    Multiplicity correction across the dimensions of one comparison: Holm (1979),
    controlling the family-wise error rate, or Benjamini–Hochberg (1995), the false
    discovery rate.
    """,
    '{"holm", "bh"}', flag="--correction", choices=("holm", "bh"),
)  # fmt: skip
DIM_TEST_SAMPLES = _o(
    "dim_test_samples", 20_000, "int", "Rows (at most) per input for the per-dimension tests.",
    """
    Rows per input (at most, from the seeded sample) for the per-dimension two-sample
    tests (KS, W1); written as ``settings.test_samples``. Formerly ``test_samples``,
    which is still read, with a FutureWarning.
    """,
    "int", flag="--dim-test-samples", minimum=2,
)  # fmt: skip
JOINT_TEST_SAMPLES = _o(
    "joint_test_samples", 4000, "int", "Rows per input for the joint energy test.",
    "Rows per input (at most) for the joint energy test.",
    "int", flag="--joint-test-samples", minimum=2,
)  # fmt: skip
N_PERMUTATIONS = _o(
    "n_permutations", 199, "int", "Permutations of the joint energy test.",
    "Permutations of the joint test; 0 computes the statistic only.",
    "int", flag="--n-permutations", minimum=0,
)  # fmt: skip
MIN_SHIFT = _o(
    "min_shift", 0.05, "nonneg", "Effect: |d mean| / std.",
    """
    Effect size of a moved dimension: |Δmean| / pooled std; also the threshold of the
    global shift.
    """,
    "float", flag="--min-shift",
)  # fmt: skip
MIN_LOG_STD_RATIO = _o(
    "min_log_std_ratio", 0.05, "nonneg", "Effect: |ln s ratio|.",
    """
    Effect size of a moved dimension: |ln std ratio|; also the threshold of the global
    scale.
    """,
    "float", flag="--min-log-std-ratio",
)  # fmt: skip
MIN_WASSERSTEIN = _o(
    "min_wasserstein", 0.05, "nonneg", "Effect: W1 / std.",
    "Effect size of a moved dimension: W1 / pooled std.",
    "float", flag="--min-wasserstein",
)  # fmt: skip
MIN_KL_DELTA = _o(
    "min_kl_delta", 0.01, "nonneg", "Effect: |d kl| (nats).",
    "Effect size of a moved dimension: |Δkl_marginal| in nats.",
    "float", flag="--min-kl-delta",
)  # fmt: skip
RELATION = _o(
    "relation", "same", "choice",
    "The inputs' role: one model retrained (dimensions correspond) or separately trained "
    "models (per-dimension differences expected; said once).",
    """
    The inputs' role. "same": one model retrained, fine-tuned or re-weighted, so its
    dimensions correspond and per-dimension changes are findings. "unrelated":
    separately trained models, whose dimensions need not correspond; per-dimension
    differences are then expected, which ``settings.relation_note`` says once instead
    of a note in every comparison (read the sorted profiles and the global and joint
    figures).
    """,
    '{"same", "unrelated"}', flag="--relation", choices=("same", "unrelated"),
)  # fmt: skip


def _by_name(options: Iterable[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}


#: the options of ``analyze``, in its signature's (and the CLI's) order
ANALYSIS_OPTIONS = _by_name(
    [
        KEY, CHANNEL_AXIS, FLATTEN, PER_SAMPLE, SEED, TEST_SAMPLES, SAMPLE_SIZE, ALPHA, NAN,
        SIGMA_LEVELS, TOP_PAIRS, MAX_JOINT_DIMS, JOINT_SAMPLES, ENERGY_SAMPLES,
        ENERGY_RESAMPLES, MCD_SAMPLES, TOP_ROWS, ACTIVE_THRESHOLD, COLLAPSE_THRESHOLD,
        MIXTURE_SAMPLES, ASSUME_SCALE, ASSUME_SHIFT, CHUNK_ROWS, THREADS, PROGRESS,
        ALLOW_FEW_ROWS,
    ]
)  # fmt: skip
#: compare's own options, in its signature's order
COMPARE_OWN = _by_name(
    [
        SEED, ALPHA, CORRECTION, DIM_TEST_SAMPLES, JOINT_TEST_SAMPLES, N_PERMUTATIONS,
        MIN_SHIFT, MIN_LOG_STD_RATIO, MIN_WASSERSTEIN, MIN_KL_DELTA, RELATION,
    ]
)  # fmt: skip
#: the analysis options compare passes on to the analysis of each latent input: all but
#: ``test_samples`` (the univariate tests' rows keep analyze's default there)
PASSED_ON = tuple(n for n in ANALYSIS_OPTIONS if n not in COMPARE_OWN and n != "test_samples")
#: every option of ``compare``
COMPARE_OPTIONS = {**COMPARE_OWN, **{n: ANALYSIS_OPTIONS[n] for n in PASSED_ON}}


def default_sample_size(test_samples: int, n_dims: int) -> int:
    """Return the sample capacity used when `sample_size` is None, for `n_dims` dimensions."""
    return int(min(DEFAULT_SAMPLE_SIZE, max(test_samples, SAMPLE_BUDGET // (8 * n_dims))))


class _Validated:
    """Validation of the option dataclasses below: each field once, then the cross checks."""

    __slots__ = ()
    OPTIONS: ClassVar[Mapping[str, Option]]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            opt: Option = f.metadata["option"]
            object.__setattr__(self, f.name, opt.check(getattr(self, f.name)))
        sample_size = getattr(self, "sample_size", None)
        if sample_size is not None:
            # the joint tests take what the sample holds: only the univariate tests set a floor
            from .validation import check_int

            check_int(sample_size, "sample_size", minimum=self.univariate_rows())

    def univariate_rows(self) -> int:
        """Return the rows of the univariate tests (the floor of `sample_size`)."""
        return int(getattr(self, "test_samples", TEST_SAMPLES.default))

    @classmethod
    def merged(cls, base: Any, given: Mapping[str, Any]) -> Any:
        """Return the options of a call: `base` (or the defaults) with `given` applied.

        `given` holds a keyword signature's values; with `base`, those left at their
        defaults do not override its fields.
        """
        unknown = sorted(set(given) - set(cls.OPTIONS))
        if unknown:
            raise TypeError(f"{cls.__name__} has no option {', '.join(map(repr, unknown))}")
        if base is None:
            return cls(**given)
        if not isinstance(base, cls):
            raise InputError(f"`options` must be a {cls.__name__}, got a {type(base).__name__}")
        changed = {k: x for k, x in given.items() if not _is_default(x, cls.OPTIONS[k])}
        return dataclasses.replace(base, **changed) if changed else base  # type: ignore[type-var]

    def replace(self, **changes: Any) -> Any:
        """Return a copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict, in their order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _is_default(value: Any, opt: Option) -> bool:
    if value is opt.default:
        return True
    try:
        return bool(value == opt.default) and type(value) is type(opt.default)
    except (TypeError, ValueError):  # arrays and the like compare elementwise
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisOptions(_Validated):
    """The options of :func:`~latentcheck.analyze`, validated once (see its Parameters).

    Create one to reuse a set of options (``lc.analyze(z, options=opts)``); it is frozen,
    so change it with :meth:`replace`. Invalid values raise InputError with one line naming
    the option.

    Examples
    --------
    >>> import latentcheck as lc
    >>> opts = lc.AnalysisOptions(seed=1, test_samples=2000)
    >>> opts.replace(alpha=0.01).alpha
    0.01
    """

    OPTIONS: ClassVar[Mapping[str, Option]] = ANALYSIS_OPTIONS

    key: str | None = KEY.field()
    channel_axis: int = CHANNEL_AXIS.field()
    flatten: bool = FLATTEN.field()
    per_sample: bool | None = PER_SAMPLE.field()
    seed: int | None = SEED.field()
    test_samples: int = TEST_SAMPLES.field()
    sample_size: int | None = SAMPLE_SIZE.field()
    alpha: float = ALPHA.field()
    nan: str = NAN.field()
    sigma_levels: tuple[float, ...] = SIGMA_LEVELS.field()
    top_pairs: int = TOP_PAIRS.field()
    max_joint_dims: int = MAX_JOINT_DIMS.field()
    joint_samples: int = JOINT_SAMPLES.field()
    energy_samples: int = ENERGY_SAMPLES.field()
    energy_resamples: int = ENERGY_RESAMPLES.field()
    mcd_samples: int = MCD_SAMPLES.field()
    top_rows: int = TOP_ROWS.field()
    active_threshold: float = ACTIVE_THRESHOLD.field()
    collapse_threshold: float = COLLAPSE_THRESHOLD.field()
    mixture_samples: int = MIXTURE_SAMPLES.field()
    assume_scale: float | None = ASSUME_SCALE.field()
    assume_shift: float = ASSUME_SHIFT.field()
    chunk_rows: int | None = CHUNK_ROWS.field()
    threads: int | None = THREADS.field()
    progress: bool | None = PROGRESS.field()
    allow_few_rows: bool = ALLOW_FEW_ROWS.field()

    @classmethod
    def trusted(cls, values: Mapping[str, Any]) -> AnalysisOptions:
        """Return options from values already validated by the same Options (no checks).

        For :class:`CompareOptions`, whose fields passed these checks when it was made;
        missing fields take their defaults.
        """
        out = object.__new__(cls)
        for name, opt in ANALYSIS_OPTIONS.items():
            object.__setattr__(out, name, values.get(name, opt.default))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareOptions(_Validated):
    """The options of :func:`~latentcheck.compare`, validated once (see its Parameters).

    compare's own options, then the analysis options it passes on to the analysis of each
    latent input (all of :class:`AnalysisOptions` but ``test_samples``; `seed` and `alpha`
    are shared).

    Examples
    --------
    >>> import latentcheck as lc
    >>> lc.CompareOptions(dim_test_samples=5000, relation="unrelated").dim_test_samples
    5000
    """

    OPTIONS: ClassVar[Mapping[str, Option]] = COMPARE_OPTIONS

    seed: int | None = SEED.field()
    alpha: float = ALPHA.field()
    correction: str = CORRECTION.field()
    dim_test_samples: int = DIM_TEST_SAMPLES.field()
    joint_test_samples: int = JOINT_TEST_SAMPLES.field()
    n_permutations: int = N_PERMUTATIONS.field()
    min_shift: float = MIN_SHIFT.field()
    min_log_std_ratio: float = MIN_LOG_STD_RATIO.field()
    min_wasserstein: float = MIN_WASSERSTEIN.field()
    min_kl_delta: float = MIN_KL_DELTA.field()
    relation: str = RELATION.field()
    key: str | None = KEY.field()
    channel_axis: int = CHANNEL_AXIS.field()
    flatten: bool = FLATTEN.field()
    per_sample: bool | None = PER_SAMPLE.field()
    sample_size: int | None = SAMPLE_SIZE.field()
    nan: str = NAN.field()
    sigma_levels: tuple[float, ...] = SIGMA_LEVELS.field()
    top_pairs: int = TOP_PAIRS.field()
    max_joint_dims: int = MAX_JOINT_DIMS.field()
    joint_samples: int = JOINT_SAMPLES.field()
    energy_samples: int = ENERGY_SAMPLES.field()
    energy_resamples: int = ENERGY_RESAMPLES.field()
    mcd_samples: int = MCD_SAMPLES.field()
    top_rows: int = TOP_ROWS.field()
    active_threshold: float = ACTIVE_THRESHOLD.field()
    collapse_threshold: float = COLLAPSE_THRESHOLD.field()
    mixture_samples: int = MIXTURE_SAMPLES.field()
    assume_scale: float | None = ASSUME_SCALE.field()
    assume_shift: float = ASSUME_SHIFT.field()
    chunk_rows: int | None = CHUNK_ROWS.field()
    threads: int | None = THREADS.field()
    progress: bool | None = PROGRESS.field()
    allow_few_rows: bool = ALLOW_FEW_ROWS.field()

    def univariate_rows(self) -> int:
        """Return the rows of the univariate tests: analyze's default in each analysis."""
        return int(TEST_SAMPLES.default)

    def analysis(self, seed: int) -> AnalysisOptions:
        """Return the options of each input's analysis, with the comparison's drawn `seed`."""
        values = {n: getattr(self, n) for n in (*PASSED_ON, "alpha")}
        return AnalysisOptions.trusted({**values, "seed": seed})

    @property
    def thresholds(self) -> dict[str, float]:
        """Return the effect-size thresholds of a moved dimension (``settings.thresholds``)."""
        return {
            "shift": self.min_shift,
            "log_std_ratio": self.min_log_std_ratio,
            "wasserstein": self.min_wasserstein,
            "kl_marginal": self.min_kl_delta,
        }


def parameters_doc(
    options: Mapping[str, Option], names: Sequence[str], docs: Mapping[str, str] | None = None
) -> str:
    """Return numpydoc Parameters entries of `names` (indented by 4), from their Options.

    `docs` replaces the description of some options (compare's `seed` and `alpha`).
    """
    docs = docs or {}
    out = []
    for name in names:
        opt = options[name]
        text = docs.get(name, opt.doc)
        out.append(f"{name} : {opt.type_doc}, {opt.default_doc()}")
        out += ["    " + line if line else "" for line in text.splitlines()]
    return textwrap.indent("\n".join(out), "    ")


def document(
    options: Mapping[str, Option], names: Sequence[str], docs: Mapping[str, str] | None = None
) -> Callable[[F], F]:
    """Return a decorator writing the Parameters entries of `names` into a docstring.

    The docstring holds the line ``{options}`` (indented as its other entries) where the
    entries go.
    """

    def decorate(fn: F) -> F:
        doc = fn.__doc__ or ""
        marker = "    {options}\n"
        if marker not in doc:  # an internal invariant of the decorated functions
            raise ValueError(f"{fn.__name__}'s docstring has no {{options}} line")
        fn.__doc__ = doc.replace(marker, parameters_doc(options, names, docs) + "\n")
        return fn

    return decorate
