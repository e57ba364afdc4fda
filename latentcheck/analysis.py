"""``analyze``: loading → two streaming passes → statistics → :class:`Report`.

This module drives the computation; it computes no statistic itself beyond arranging the
accumulated states for the ``stats`` modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import gc
import math
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _validation as v
from ._inputs import DrawSource, PosteriorJob, aggregate_description, resolve_inputs
from ._joint import (
    DEFAULT_ENERGY_RESAMPLES,
    DEFAULT_ENERGY_SAMPLES,
    DEFAULT_JOINT_SAMPLES,
    DEFAULT_MCD_SAMPLES,
    JointOptions,
    JointPass,
    joint_results,
)
from ._passes import (
    FirstPass,
    SecondPass,
    SecondPassFactory,
    WorkerPool,
    default_chunk_rows,
    default_threads,
    run_pass,
    segment_cap,
    single_threaded_blas,
    start_pass,
)
from ._spatial import (
    all_positions_block,
    check_claim,
    headline_note,
    one_row_per_item,
    spatial_block,
    spatial_factory,
    spatial_shape,
    widen_normalization,
)
from .accumulate import Reservoir, Scratch, key_threshold
from .errors import (
    DegenerateDimensionWarning,
    InputError,
    LatentcheckWarning,
    SampleQualityWarning,
)
from .loading import LatentSource, open_latents, plan_blocks
from .report import (
    SCHEMA_VERSION,
    Dims,
    InputInfo,
    Joint,
    Report,
    Settings,
    Summary,
    UnivariateTest,
    level_key,
    to_jsonable,
)

__all__ = ["Analysis", "analyze", "analyze_with_sample", "sorted_quantiles"]

F64 = NDArray[np.float64]

#: Default capacity of the seeded sample of rows (quantiles, negentropy).
DEFAULT_SAMPLE_SIZE = 100_000
#: Memory the sample may take (bytes); the capacity shrinks for very wide data.
SAMPLE_BUDGET = 64 * 2**20
DEFAULT_MAX_JOINT_DIMS = 2048


def sorted_quantiles(sorted_x: NDArray[Any], levels: Sequence[float]) -> F64:
    """Return numpy "linear" quantiles of each column of an already sorted array.

    Bit-for-bit the values of ``np.quantile(x, levels, axis=0)`` (same virtual index
    (n − 1)·q and the same two-sided lerp), without re-partitioning the data.
    """
    n = sorted_x.shape[0]
    q = np.asarray(levels, dtype=np.float64)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    gamma = (virtual - prev)[:, None]
    lo = prev.astype(np.intp)
    hi = lo + 1
    above = virtual >= n - 1
    lo[above] = n - 1
    hi[above] = n - 1
    hi = np.minimum(hi, n - 1)
    a = np.asarray(sorted_x[lo], dtype=np.float64)
    b = np.asarray(sorted_x[hi], dtype=np.float64)
    diff = b - a
    out = a + diff * gamma
    quantiles: F64 = np.where(gamma >= 0.5, b - diff * (1 - gamma), out)
    return quantiles


@contextlib.contextmanager
def _analysis_runtime() -> Iterator[None]:
    """Run the analysis with one BLAS thread and no cyclic GC (both restored after).

    The passes run on our own worker threads, so BLAS threads would only oversubscribe
    the cores, and OpenBLAS's idle threads spin for a while after each threaded call
    (about 5% of a report's CPU in perf). The analysis makes few reference cycles, but
    its imports and temporaries trigger full collections that walk every object scipy
    created (another 5%); reference counting still frees everything else at once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with single_threaded_blas():
            yield
    finally:
        if enabled:
            gc.enable()


class _Collector:
    """Collects warnings for the report and re-issues them at the caller's level."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, message: str, category: type[Warning] = LatentcheckWarning) -> None:
        """Record `message` and issue it as a warning pointing at analyze's caller."""
        if message not in self.messages:
            self.messages.append(message)
        warnings.warn(message, category, stacklevel=4)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call fn, turning the latentcheck warnings it issues into collected ones."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LatentcheckWarning)
            result = fn(*args, **kwargs)
        for w in caught:
            if issubclass(w.category, LatentcheckWarning):
                self.warn(str(w.message), w.category)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return result


class _Progress:
    """A progress bar on stderr, shown only when stderr is a terminal.

    Worker processes update it too: its count lives in shared memory, under a lock
    shared across processes.
    """

    def __init__(self, enabled: bool | None, total: int, label: str) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled) and total > 0
        self.total = total
        self.label = label
        self.shown = -1
        self.lock: Any = threading.Lock()
        self._done: Any = types.SimpleNamespace(value=0)
        if self.enabled:
            import multiprocessing

            try:
                self.lock = multiprocessing.Lock()
                self._done = multiprocessing.RawValue("q", 0)
            except OSError:  # no shared memory: the bar then counts this process's chunks
                pass

    def __call__(self, n: int) -> None:
        if not self.enabled:
            return
        with self.lock:
            self._done.value += n
            pct = int(100 * self._done.value / self.total)
            if pct != self.shown:
                self.shown = pct
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}%")
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def analyze(
    latents: Any = None,
    *,
    mu: Any = None,
    logvar: Any = None,
    std: Any = None,
    var: Any = None,
    key: str | None = None,
    channel_axis: int = 1,
    flatten: bool = False,
    per_sample: bool | None = None,
    seed: int | None = 0,
    test_samples: int = 5000,
    sample_size: int | None = None,
    alpha: float = 0.05,
    nan: str = "omit",
    sigma_levels: Sequence[float] | None = None,
    top_pairs: int = 10,
    max_joint_dims: int = DEFAULT_MAX_JOINT_DIMS,
    joint_samples: int = DEFAULT_JOINT_SAMPLES,
    energy_samples: int = DEFAULT_ENERGY_SAMPLES,
    energy_resamples: int = DEFAULT_ENERGY_RESAMPLES,
    mcd_samples: int = DEFAULT_MCD_SAMPLES,
    top_rows: int = 10,
    active_threshold: float = 0.01,
    collapse_threshold: float = 0.01,
    mixture_samples: int = 2048,
    assume_scale: float | None = None,
    assume_shift: float = 0.0,
    chunk_rows: int | None = None,
    threads: int | None = None,
    progress: bool | None = False,
    allow_few_rows: bool = False,
) -> Report:
    """Describe a data set of latents: per-dimension, joint and practical statistics.

    Parameters
    ----------
    latents : ndarray, path, or a sequence of arrays or paths, optional
        Samples on axis 0: shape (n_samples, n_dims), or (n_samples, C, H, W) and other
        conv layouts (channels on `channel_axis` are the dimensions, positions are rows).
        Paths may be ``.npy`` (memory-mapped), ``.npz`` or globs; several = one data set.
        ``.npz`` files holding posterior parameters by name (``mu`` and ``logvar`` /
        ``std`` / ``var``, optionally ``z``) are analysed as posteriors.
    mu, logvar, std, var : same kinds as `latents`, optional
        Posterior parameters q(z|x) = N(mu, diag sigma²): `mu` with one of `logvar`
        (ln sigma²), `std` (sigma) or `var` (sigma²), all of the same shape. The aggregate
        posterior is then analysed from `latents` if given (z), else from one seeded draw
        z = mu + sigma * eps per input; the report's ``posterior`` block holds the rate.
    key : str or None, default=None
        ``.npz`` member to read; by default chosen by name (``z``, ``latents``, ...).
    channel_axis : int, default=1
        Axis holding the dimensions for arrays of 3 or more axes.
    flatten : bool, default=False
        Make every element of a sample a dimension instead.
    per_sample : bool or None, default=None
        Several files, each one sample (e.g. (C, H, W) files): True reads each file as
        one sample (mixed spatial sizes pooled per channel), False as batches along axis
        0; None refuses 3-D files of one shape that look like single samples (see
        :func:`~latentcheck.loading.open_latents`).
    seed : int or None, default=0
        Seed of the sample of rows and of every Monte-Carlo step; None draws one (the seed
        used is written into the report).
    test_samples : int, default=5000
        Rows (at most) on which the univariate tests run.
    sample_size : int or None, default=None
        Capacity of the seeded sample of rows used for quantiles and negentropy; None means
        100 000 rows or what fits in 64 MiB. Quantiles are exact when it holds every row.
    alpha : float, default=0.05
        Significance level used in the verdict.
    nan : {"omit", "error"}, default="omit"
        Leave rows holding NaN or ±inf out (and count them), or refuse such input.
    sigma_levels : sequence of float or None, default=None
        The k of the k-σ outlier rates; default (3, 4, 5, 6).
    top_pairs : int, default=10
        How many of the most correlated pairs to list.
    max_joint_dims : int, default=2048
        Above this many dimensions the O(d²) joint part is skipped (with the reason).
    joint_samples : int, default=5000
        Rows of the seeded sample for Henze–Zirkler, Doornik–Hansen (and Mardia's skewness
        when its third-order sums over all rows would cost too much); Royston uses at most
        2000 of them.
    energy_samples : int, default=500
        Rows for the energy test (O(n²·d) per replicate).
    energy_resamples : int, default=99
        Monte-Carlo replicates of the energy test's p-value.
    mcd_samples : int, default=1000
        Rows for the robust (MinCovDet) distances; MCD runs only with at least 20 rows per
        dimension (fewer make its outlier rate unreliable), so by default up to d = 50.
    top_rows : int, default=10
        How many of the rows with the largest Mahalanobis distances to list.
    active_threshold : float, default=0.01
        Posterior only: a dimension is an active unit when Var_x(mu_j) exceeds this
        (Burda et al. 2016).
    collapse_threshold : float, default=0.01
        Posterior only: a dimension is collapsed when its rate is below this (nats).
    mixture_samples : int, default=2048
        Posterior only: inputs in the mixture estimate of I(x; z) and KL(q(z) || p(z)).
    assume_scale, assume_shift : float or None, default=None and 0.0
        A normalisation ``(z - assume_shift) * assume_scale`` your pipeline applies; the
        report checks it against the data and names known mistakes (inverted factor,
        missing shift, another VAE's constant, per-channel constants needed).
    chunk_rows : int or None, default=None
        Rows per streamed chunk; None picks about 1 MiB per chunk. Results do not depend
        on it (to rounding).
    threads : int or None, default=None
        Parallel workers for the passes, the caller included; None uses the available
        cores (at most 8). On Linux the extra workers are forked processes (threads
        elsewhere, for small data, and when other Python threads run); see the README's
        Architecture section. The report is the same, bit for bit, for any number.
    progress : bool or None, default=False
        Show a progress bar on stderr; None shows one when stderr is a terminal.
    allow_few_rows : bool, default=False
        Describe data with fewer rows than dimensions, or fewer than 20 rows; refused
        otherwise (usually a transposed array, see ``_validation.check_rows_vs_dims``).

    Returns
    -------
    Report

    Raises
    ------
    InputError
        Bad parameters, shapes, too few rows, non-finite values with ``nan="error"``.
    FormatError
        Unreadable files.

    Warns
    -----
    DegenerateDimensionWarning
        Dimensions with (near-)zero variance.
    SmallSampleWarning
        Too few rows for a test.

    Examples
    --------
    >>> import numpy as np
    >>> import latentcheck as lc
    >>> z = np.random.default_rng(0).standard_normal((2000, 4))
    >>> rep = lc.analyze(z, seed=0)
    >>> rep.input.n_dims, rep.input.n_samples
    (4, 2000)
    >>> bool(abs(rep.summary.kl_gauss_sum) < 0.01)
    True
    """
    options = dict(locals())
    del options["latents"]
    from .profiles import is_profile_input, report_profiles

    if is_profile_input(latents):  # saved profiles (issue 19): merged, then finished
        rep: Report = report_profiles(latents, **options)
        return rep
    return analyze_with_sample(latents, **options).report


class Analysis:
    """A report together with the seeded sample of rows it was computed from.

    Attributes
    ----------
    report : Report
    sample : ndarray of shape (n_sample_rows, n_dims)
        The seeded uniform sample of rows, in the input dtype, in key order (its first m
        rows are themselves a uniform sample of size m). Gathered on first access: a
        report alone never needs the whole sample in key order.
    row_ids : ndarray of int64
        Global row indices of the sample rows.
    """

    __slots__ = ("_reservoir", "report")

    def __init__(self, report: Report, reservoir: Reservoir) -> None:
        self.report = report
        self._reservoir = reservoir

    def __repr__(self) -> str:
        inp = self.report.input
        return (
            f"<Analysis: report on {inp.n_samples} rows x {inp.n_dims} dims, "
            f"sample of {self._reservoir.size} rows>"
        )

    @property
    def sample(self) -> NDArray[Any]:
        """The sample's rows in key order."""
        rows: NDArray[Any] = self._reservoir.finalize().rows
        return rows

    @property
    def row_ids(self) -> NDArray[np.int64]:
        """Global row indices of the sample rows."""
        return self._reservoir.finalize().row_ids


def analyze_with_sample(
    latents: Any = None,
    *,
    mu: Any = None,
    logvar: Any = None,
    std: Any = None,
    var: Any = None,
    key: str | None = None,
    channel_axis: int = 1,
    flatten: bool = False,
    per_sample: bool | None = None,
    active_threshold: float = 0.01,
    collapse_threshold: float = 0.01,
    mixture_samples: int = 2048,
    **options: Any,
) -> Analysis:
    """Run :func:`analyze` and also return the seeded sample of rows.

    ``compare`` uses the samples of two data sets for its two-sample tests. Parameters are
    those of :func:`analyze`.
    """
    z_source, post = resolve_inputs(
        latents,
        mu=mu,
        logvar=logvar,
        std=std,
        var=var,
        key=key,
        channel_axis=channel_axis,
        flatten=flatten,
        per_sample=per_sample,
    )
    if post is None:
        if latents is None:
            raise InputError(
                "No input given: pass latents (samples), or `mu` with `logvar`, `std` or `var`"
            )
        source = open_latents(
            latents, key=key, channel_axis=channel_axis, flatten=flatten, per_sample=per_sample
        )
        return analyze_source(source, **options)
    seed = v.check_seed(options.pop("seed", 0))
    job = PosteriorJob(
        post,
        active_threshold=v.check_positive(active_threshold, "active_threshold"),
        collapse_threshold=v.check_positive(collapse_threshold, "collapse_threshold"),
        mixture_samples=v.check_int(mixture_samples, "mixture_samples", minimum=2),
    )
    source = z_source if z_source is not None else DrawSource(post, seed)
    return analyze_source(
        source,
        seed=seed,
        kind="posterior",
        aggregate=aggregate_description(post, seed),
        posterior=job,
        **options,
    )


def check_dimensions(mean: F64, std: F64, name: str, collector: _Collector) -> NDArray[np.bool_]:
    """Return the degenerate-dimension mask, after the overflow and all-constant checks.

    Overflowing moments and all-constant data raise InputError; some constant dimensions
    are a DegenerateDimensionWarning (shared by ``analyze`` and ``Stream.report``).
    """
    v.check_no_overflow(mean, std, name)
    from .stats.scale import DEGENERATE_RTOL, degenerate_dims

    degenerate: NDArray[np.bool_] = degenerate_dims(std, mean)
    if degenerate.all():
        raise InputError(
            f"All {mean.size} dimensions of {name} are constant (or vary by less than "
            "1e-12 of their value); there is no distribution to describe"
        )
    if degenerate.any():
        idx = np.flatnonzero(degenerate)
        shown = ", ".join(str(i) for i in idx[:10]) + (" ..." if idx.size > 10 else "")
        collector.warn(
            f"{idx.size} dimension(s) have zero or near-zero variance (std below "
            f"{DEGENERATE_RTOL:g} of the largest): {shown}; they are left out of tests "
            "and joint statistics",
            DegenerateDimensionWarning,
        )
    return degenerate


@_analysis_runtime()
def analyze_source(
    source: LatentSource,
    *,
    seed: int | None = 0,
    test_samples: int = 5000,
    sample_size: int | None = None,
    alpha: float = 0.05,
    nan: str = "omit",
    sigma_levels: Sequence[float] | None = None,
    top_pairs: int = 10,
    max_joint_dims: int = DEFAULT_MAX_JOINT_DIMS,
    joint_samples: int = DEFAULT_JOINT_SAMPLES,
    energy_samples: int = DEFAULT_ENERGY_SAMPLES,
    energy_resamples: int = DEFAULT_ENERGY_RESAMPLES,
    mcd_samples: int = DEFAULT_MCD_SAMPLES,
    top_rows: int = 10,
    assume_scale: float | None = None,
    assume_shift: float = 0.0,
    chunk_rows: int | None = None,
    threads: int | None = None,
    progress: bool | None = False,
    allow_few_rows: bool = False,
    kind: str = "samples",
    aggregate: str | None = None,
    posterior: PosteriorJob | None = None,
) -> Analysis:
    """Run :func:`analyze` on an opened :class:`LatentSource`; keep the sample of rows."""
    seed_used = v.check_seed(seed)
    test_samples = v.check_int(test_samples, "test_samples", minimum=3)
    alpha = v.check_fraction(alpha, "alpha")
    nan = v.check_nan_policy(nan)
    levels = v.check_levels(sigma_levels, "sigma_levels")
    top_pairs = v.check_int(top_pairs, "top_pairs", minimum=0)
    if assume_scale is not None:
        assume_scale = v.check_positive(assume_scale, "assume_scale")
        if assume_scale == 0:
            raise InputError("`assume_scale` must be > 0, got 0")
    assume_shift = v.check_real(assume_shift, "assume_shift")
    max_joint_dims = v.check_int(max_joint_dims, "max_joint_dims", minimum=1)
    jopts = JointOptions(
        joint_samples=v.check_int(joint_samples, "joint_samples", minimum=3),
        energy_samples=v.check_int(energy_samples, "energy_samples", minimum=3),
        energy_resamples=v.check_int(energy_resamples, "energy_resamples", minimum=0),
        mcd_samples=v.check_int(mcd_samples, "mcd_samples", minimum=3),
        top_rows=v.check_int(top_rows, "top_rows", minimum=0),
    )
    d = source.n_dims
    if sample_size is None:
        sample_size = int(min(DEFAULT_SAMPLE_SIZE, max(test_samples, SAMPLE_BUDGET // (8 * d))))
    # the joint tests take what the sample holds: only the univariate tests set a floor
    sample_size = v.check_int(sample_size, "sample_size", minimum=test_samples)
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(d)
    chunk_rows = v.check_int(chunk_rows, "chunk_rows", minimum=1)
    threads = default_threads() if threads is None else v.check_int(threads, "threads", minimum=1)
    v.check_row_count(source.n_rows, source.name)
    v.check_rows_vs_dims(
        source.n_rows, d, source.name, shape=source.shape, allow=bool(allow_few_rows)
    )

    collector = _Collector()
    for note in source.notes:
        if "converted" in note:
            collector.messages.append(note)

    covariance = d <= max_joint_dims
    ranges = plan_blocks([source], chunk_rows)
    threshold: int | None = key_threshold(source.n_rows, sample_size)
    bar = _Progress(progress, 2 * source.n_items, "latentcheck")
    # forked now, while this process holds little that it could later copy-on-write
    # room for the sample a worker sends back (see _passes._Arena): the rows whose key
    # passes the prefilter (about sample_size + 8 sqrt(sample_size)), with their keys and
    # row ids, should the worker stream every segment
    room = min(source.n_rows, int(1.02 * (sample_size + 8 * math.sqrt(sample_size))) + 1024)
    arena = room * (d * source.dtype.itemsize + 16)
    pool = WorkerPool.maybe(source, threads, bar if bar.enabled else None, arena)
    try:
        make_first = functools.partial(
            FirstPass,
            d,
            dtype=source.dtype,
            seed=seed_used,
            sample_size=sample_size,
            covariance=covariance,
            key_threshold=threshold,
            scratch=Scratch(),  # one set of blocks per worker for all its segments
        )
        cap1 = segment_cap(8 * d * d if covariance else 64 * d)  # a co-moment matrix each
        # with a worker process streaming, this process first imports what the sample
        # statistics need (0.5 s) and then takes the segments of pass 1 still left
        pass1 = start_pass(
            source,
            ranges,
            make_first,
            threads=threads,
            progress=bar,
            pool=pool,
            in_caller=pool is not None,
            defer=True,
            shared_results=True,  # the workers' samples come back through shared memory
            max_segments=cap1,
        )
        try:
            if pool is not None:
                _import_sample_statistics()
            first: FirstPass = pass1.result()
        except BaseException:
            pass1.cancel()
            raise
        nonfinite = first.nonfinite
        if nonfinite.rows and nan == "error":
            raise InputError(
                f"{source.name} has {int(nonfinite.per_dim.sum())} non-finite values in "
                f"{nonfinite.rows} rows (first at row {nonfinite.first_row}, dimension "
                f"{nonfinite.first_dim}); use --nan omit to leave those rows out"
            )
        moments = first.moments
        n = moments.n
        if n < 2:
            raise InputError(
                f"{source.name} has {n} rows without NaN or inf out of {source.n_rows}; "
                "at least 2 are needed"
            )
        if nonfinite.rows:
            collector.warn(
                f"{nonfinite.rows} of {source.n_rows} rows hold NaN or inf values and were "
                "left out of every statistic"
            )
        mean = moments.mean
        std = moments.std()
        degenerate = check_dimensions(mean, std, source.name, collector)
        safe_std = np.where(std > 0, std, 1.0)
        used = np.flatnonzero(~degenerate)
        joint_reason = _joint_reason(first, used, d, n, max_joint_dims)
        make_joint = None
        third = False
        if joint_reason is None and first.comoments is not None:
            from .stats.multivariate import mardia_third_order_affordable

            # conv latents: Mardia's tests run on separated rows (_joint._independent_tests)
            third = spatial_shape(source) is None and mardia_third_order_affordable(n, used.size)
            make_joint = JointPass.factory(
                used,
                first.comoments.mean,
                first.comoments.cov(),
                n,
                top=jopts.top_rows,
                third=third,
            )

        make_spatial = spatial_factory(source, mean, safe_std, levels)

        make_second = SecondPassFactory(
            levels,
            mean,
            safe_std,
            source.dtype,
            joint=make_joint,
            spatial=make_spatial,
            finite=nonfinite.rows == 0,
        )
        # Mardia's third-order sums are the largest part of a segment's pass-2 state
        state2 = 4 * used.size**2 * (used.size + 1) if third else 64 * d

        # pass 2 streams on the workers while this process computes what needs only the
        # sample (tests, negentropy, MCD); with worker processes, it then takes the
        # segments of pass 2 still left when the joint results first need the pass
        pass2 = start_pass(
            source,
            ranges,
            make_second,
            threads=max(1, threads - 1),
            progress=bar,
            pool=pool,
            in_caller=pool is not None,
            defer=True,
            max_segments=segment_cap(state2),
        )
        try:
            # the segments' samples are merged later (Reservoir.split), while pass 2 runs
            if not first.reservoir.complete():  # p < 1e-15: the prefilter was too tight
                first.reservoir = run_pass(
                    source,
                    ranges,
                    functools.partial(make_first, key_threshold=None),
                    threads=max(1, threads - 1),
                    max_segments=cap1,
                ).reservoir
            if pool is not None:
                # the workers give up their side of the shared memory; this process keeps
                # the maps that its segments' sample rows still use (see _Arena.close)
                pool.release_shared()
        except BaseException:
            pass2.cancel()
            raise
    except BaseException:
        if pool is not None:
            pool.close()
        bar.close()
        raise
    try:
        result = _sample_and_finish(
            source=source,
            first=first,
            pass2=pass2,
            n=n,
            d=d,
            mean=mean,
            std=std,
            degenerate=degenerate,
            used=used,
            joint_reason=joint_reason,
            levels=levels,
            test_samples=test_samples,
            sample_size=sample_size,
            alpha=alpha,
            nan=nan,
            top_pairs=top_pairs,
            max_joint_dims=max_joint_dims,
            jopts=jopts,
            chunk_rows=chunk_rows,
            threads=threads,
            seed_used=seed_used,
            kind=kind,
            aggregate=aggregate,
            posterior=posterior,
            assume_scale=assume_scale,
            assume_shift=assume_shift,
            collector=collector,
        )
    except BaseException:
        pass2.cancel()
        raise
    finally:
        if pool is not None:
            pool.close()
        bar.close()
    return result


def _import_sample_statistics() -> None:
    """Import what the rest of the analysis needs, while the worker streams pass 1.

    scipy.stats and statsmodels' Lilliefors test for the sample tests (0.5 s), and this
    package's statistics modules: imported later, between the passes, they kept the
    worker idle for 0.1 s.
    """
    from . import verdict
    from .stats import divergence, mardia, multivariate, normality, outliers, scale, whitening

    del divergence, mardia, multivariate, outliers, scale, whitening, verdict
    normality.import_dependencies()


def _sample_and_finish(
    *,
    source: LatentSource,
    first: FirstPass,
    pass2: Any,
    n: int,
    d: int,
    mean: F64,
    std: F64,
    degenerate: NDArray[np.bool_],
    used: NDArray[np.intp],
    joint_reason: str | None,
    levels: tuple[float, ...],
    test_samples: int,
    sample_size: int,
    alpha: float,
    nan: str,
    top_pairs: int,
    max_joint_dims: int,
    jopts: JointOptions,
    chunk_rows: int,
    threads: int,
    seed_used: int,
    kind: str,
    aggregate: str | None,
    posterior: PosteriorJob | None,
    assume_scale: float | None,
    assume_shift: float,
    collector: _Collector,
) -> Analysis:
    """Compute the sample-based statistics (while pass 2 runs), then assemble the report."""
    moments = first.moments
    nonfinite = first.nonfinite
    reservoir = first.reservoir
    # sorted in the input dtype: each consumer widens only the rows or columns it reads
    # (a float64 copy of a 100,000-row sample costs more in page faults than the sort);
    # column by column, so that the columns that negentropy and the histograms read are
    # contiguous (0.1 s -> 0.05 s for the three, same values)
    if spatial_shape(source) is None:
        # only the first rows in key order are read as rows: the columns come straight
        # from the segments' samples (see Reservoir.split)
        head = max(test_samples, jopts.joint_samples, jopts.mcd_samples)
        columns, sample, sample_ids = reservoir.split(head)
    else:  # the spatial tests pick their rows from the whole sample, in key order
        reservoir.finalize()
        sample, sample_ids = reservoir.rows, reservoir.row_ids
        # a copy even when sample.T is contiguous (one dimension): sorted in place, a view
        # would sort the rows that the tests read
        columns = np.array(sample.T, order="C")
    sample_rows = columns.shape[1]
    quantiles_exact = sample_rows == n
    columns.sort(axis=1)
    sorted_sample = columns.T
    quantiles = sorted_quantiles(sorted_sample, v.QUANTILE_LEVELS)

    from .stats import divergence
    from .stats.duplicates import sample_checks, warnings_for
    from .stats.normality import UNIVARIATE_TESTS, univariate_tests

    checks = sample_checks(sample, sorted_sample, std, n_total=n)
    for message in warnings_for(checks, d):
        collector.warn(message, SampleQualityWarning)

    kl_g = divergence.kl_gauss(mean, std)
    neg = np.full(d, np.nan)
    ok_cols = np.flatnonzero(~degenerate)
    if ok_cols.size:
        neg[ok_cols] = collector.run(
            divergence.negentropy,
            sorted_sample if ok_cols.size == d else sorted_sample[:, ok_cols],
            seed=seed_used,
        )
    kl_m = kl_g + neg

    test_sample = np.asarray(sample[:test_samples], dtype=np.float64)
    tests = collector.run(univariate_tests, test_sample, degenerate=degenerate)
    n_test = test_sample.shape[0]
    histogram = _histograms(sorted_sample, mean, std, degenerate)  # before waiting for pass 2

    spatial = independent = None
    if spatial_shape(source) is not None:
        # conv latents: the headline and joint tests need rows independent across the
        # sample, chosen from the spatial autocorrelation of pass 2 (issue 15)
        second_early: SecondPass = pass2.result()
        if "spatial" in second_early.extras:
            spatial, vif_mean, vif_std, independent, sep_tests = spatial_block(
                second_early.extras,
                var=moments.var(),
                fourth=moments.m4 / moments.n,
                sample=sample,
                row_ids=sample_ids,
                rows_per_item=source.rows_per_item,
                test_samples=test_samples,
                degenerate=degenerate,
                run=collector.run,
            )
            spatial["all_positions_tests"] = all_positions_block(tests, n_test)
            spatial["headline_tests"] = headline_note(independent, test_samples)
            tests = sep_tests
            n_test = min(test_samples, independent.rows.shape[0])
        else:
            # a single pass (lc.Stream): no autocorrelation to choose positions by, so the
            # headline and joint tests take one sampled row per item (issue 15 on Stream)
            independent = one_row_per_item(
                sample, sample_ids, source.rows_per_item, len(spatial_shape(source) or ())
            )
            one = np.asarray(independent.rows[:test_samples], dtype=np.float64)
            tests = collector.run(univariate_tests, one, degenerate=degenerate)
            n_test = one.shape[0]

    joint = _joint(first, degenerate, joint_reason, top_pairs, collector)
    if joint.skipped is None and first.comoments is not None:
        jtests, maha, mcd = joint_results(
            sample=sample,
            sample_ids=sample_ids,
            used=used,
            n=n,
            mean=first.comoments.mean,
            cov=first.comoments.cov(),
            joint_pass=lambda: pass2.result().extras.get("joint"),
            options=jopts,
            seed=seed_used,
            describe=source.describe_row,
            run=collector.run,
            independent=independent,
        )
        joint = dataclasses.replace(joint, tests=jtests, mahalanobis=maha, mcd=mcd)

    second: SecondPass = pass2.result()
    centered = second.centered.rates()
    prior = second.prior.rates()
    if degenerate.any():
        centered[:, degenerate] = np.nan

    from .stats.scale import normalization, pooled_sq_var_from_sample

    full_cov = first.comoments.cov() if first.comoments is not None else None
    norm = normalization(
        n,
        mean,
        moments.m2,
        moments.m4,
        m3=moments.m3,
        cov=full_cov,
        pooled_sq_var=pooled_sq_var_from_sample(sample, float(mean.mean())),
    )
    if spatial is not None:
        norm = widen_normalization(norm, vif_mean, vif_std, items=second.extras["items"])
    claim = None
    if assume_scale is not None:
        claim = check_claim(
            norm,
            assume_scale=assume_scale,
            assume_shift=assume_shift,
            degenerate=degenerate,
            run=collector.run,
        )

    levels_arr = np.asarray(levels, dtype=np.float64)
    expected = np.array([math.erfc(k / math.sqrt(2.0)) for k in levels])
    ok_dims = ~degenerate
    pooled = (
        np.nansum(centered[:, ok_dims], axis=1) / max(int(ok_dims.sum()), 1)
        if ok_dims.any()
        else np.full(levels_arr.size, np.nan)
    )
    pooled_prior = prior.mean(axis=1)
    rejected = {name: int(np.sum(t.pvalue_holm < alpha)) for name, t in tests.items()}
    post = (
        posterior.run(seed=seed_used, threads=threads, chunk_rows=chunk_rows, collect=collector.run)
        if posterior is not None
        else None
    )
    kkeys = [level_key(k) for k in levels]
    summary = Summary(
        verdict="",  # judged below, once the report holds every figure
        findings=(),
        kl_gauss_sum=float(np.sum(kl_g[ok_dims])),
        negentropy_sum=float(np.nansum(neg[ok_dims])),
        kl_marginal_sum=float(np.nansum(kl_m[ok_dims])),
        outlier_rate=dict(zip(kkeys, pooled.tolist(), strict=True)),
        expected_outlier_rate=dict(zip(kkeys, expected.tolist(), strict=True)),
        outlier_ratio=dict(zip(kkeys, (pooled / expected).tolist(), strict=True)),
        prior_outlier_rate=dict(zip(kkeys, pooled_prior.tolist(), strict=True)),
        dims_rejected=rejected,
        std_range=(float(np.min(std)), float(np.max(std))),
        effective_dims=joint.effective_dims,
        normalization=norm,
        normalization_check=claim,
        sample_checks=to_jsonable(checks),
    )
    dims = Dims(
        index=np.arange(d, dtype=np.int64),
        count=np.full(d, n, dtype=np.int64),
        mean=mean,
        std=std,
        min=second.extremes.min,
        max=second.extremes.max,
        quantiles=quantiles,
        skewness=moments.skewness(),
        excess_kurtosis=moments.excess_kurtosis(),
        kl_gauss=kl_g,
        negentropy=neg,
        kl_marginal=kl_m,
        outlier_rate=centered,
        prior_outlier_rate=prior,
        tests={
            name: UnivariateTest(
                statistic=tests[name].statistic,
                pvalue=tests[name].pvalue,
                pvalue_holm=tests[name].pvalue_holm,
                reason=tests[name].reason,
            )
            for name in UNIVARIATE_TESTS
        },
        degenerate=degenerate,
        histogram=histogram,
    )
    from . import __version__

    info = InputInfo(
        sources=_source_labels(source, posterior),
        kind=kind,
        shape=source.shape,
        dtype=str(source.members[0].dtype),
        layout=source.layout(),
        channel_axis=source.channel_axis,
        n_rows_total=source.n_rows,
        n_samples=n,
        n_dims=d,
        non_finite_rows=int(nonfinite.rows),
        non_finite_values=tuple(int(c) for c in nonfinite.per_dim),
        aggregate=aggregate or "the given samples",
        notes=tuple(source.notes),
    )
    settings = Settings(
        seed=seed_used,
        test_samples=test_samples,
        sample_size=sample_size,
        sample_rows=sample_rows,
        quantiles_exact=quantiles_exact,
        alpha=alpha,
        nan_policy=nan,
        chunk_rows=chunk_rows,
        threads=threads,
        sigma_levels=tuple(levels),
        quantile_levels=v.QUANTILE_LEVELS,
        max_joint_dims=max_joint_dims,
        entropy_estimator=str(divergence.ENTROPY_ESTIMATOR),
    )
    if not quantiles_exact:
        source.notes.append(
            f"quantiles and negentropy come from a seeded uniform sample of {sample_rows} of "
            f"{n} rows"
        )
        info = InputInfo(**{**_fields(info), "notes": tuple(source.notes)})
    source.close()
    report = Report(
        schema_version=SCHEMA_VERSION,
        tool={"name": "latentcheck", "version": __version__},
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        input=info,
        settings=settings,
        summary=summary,
        dims=dims,
        joint=joint,
        spatial=spatial,
        posterior=post,
        warnings=tuple(collector.messages),
    )
    from .verdict import judge

    findings = judge(report)
    report = dataclasses.replace(
        report,
        summary=dataclasses.replace(
            summary, findings=findings, verdict=" ".join(f.text for f in findings)
        ),
    )
    return Analysis(report, reservoir)


def _source_labels(source: LatentSource, posterior: PosteriorJob | None) -> tuple[str, ...]:
    """Return the input's labels: the analysed rows, then the posterior's mu and spread."""
    labels = list(source.labels)
    if posterior is not None:
        for part in (posterior.post.mu, posterior.post.spread):
            labels += [x for x in part.labels if x not in labels]
    return tuple(labels)


def _histograms(
    sorted_sample: NDArray[Any], mean: F64, std: F64, degenerate: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Return per-dimension counts of the sample's standardised values in HISTOGRAM_EDGES.

    The sample is sorted, so the counts come from one searchsorted per dimension. Bins are
    left-closed; index 0 counts values below -5 std and the last index values at or above 5.
    """
    from .accumulate import exact_threshold
    from .report import HISTOGRAM_EDGES

    edges = np.asarray(HISTOGRAM_EDGES)
    n, d = sorted_sample.shape
    out = np.zeros((d, edges.size + 1), dtype=np.int64)
    # contiguous columns, and cuts in the sample's dtype that count exactly as the float64
    # cuts do: searchsorted would otherwise copy (and widen) every column
    columns = np.ascontiguousarray(sorted_sample.T)
    for j in range(d):
        if degenerate[j]:
            continue
        cuts = exact_threshold(mean[j] + edges * std[j], columns.dtype, upper=False)
        pos = np.searchsorted(columns[j], cuts, side="left")
        out[j] = np.diff(np.concatenate([[0], pos, [n]]))
    return out


def _fields(obj: Any) -> dict[str, Any]:
    """Return the fields of a dataclass instance as a dict (shallow)."""
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _joint_reason(
    first: FirstPass, used: NDArray[np.intp], d: int, n: int, max_joint_dims: int
) -> str | None:
    """Return why the joint statistics cannot run, or None."""
    if first.comoments is None:
        return (
            f"{d} dimensions exceed max_joint_dims={max_joint_dims} (the covariance would "
            f"take {d * d * 8 / 2**20:.3g} MiB per thread); raise --max-joint-dims to compute it"
        )
    if used.size == 0:
        return "every dimension has zero variance"
    if used.size >= n:
        return f"{used.size} dimensions but only {n} rows: the covariance is singular (d >= N)"
    return None


def _joint(
    first: FirstPass,
    degenerate: NDArray[np.bool_],
    reason: str | None,
    top_pairs: int,
    collector: _Collector,
) -> Joint:
    """Return the second-order joint statistics over the non-degenerate dimensions."""
    excluded = tuple((int(i), "zero or near-zero variance") for i in np.flatnonzero(degenerate))
    used = np.flatnonzero(~degenerate)
    if reason is not None or first.comoments is None:
        reason = reason or "no covariance"
        collector.warn(f"Joint statistics skipped: {reason}")
        return Joint(
            skipped=reason,
            n_dims_used=int(used.size),
            dims_excluded=excluded,
            kl_gauss=math.nan,
            kl_gauss_dims=math.nan,
            total_correlation=math.nan,
            effective_dims=math.nan,
            condition_number=math.nan,
            eigenvalues=np.empty(0),
            top_pairs=(),
        )
    from .stats.scale import joint_gaussian

    cov = first.comoments.cov()[np.ix_(used, used)]
    mean = first.comoments.mean[used]
    jg = joint_gaussian(mean, cov, used, top_pairs=top_pairs)
    return Joint(
        skipped=None,
        n_dims_used=int(used.size),
        dims_excluded=excluded,
        kl_gauss=jg.kl_gauss,
        kl_gauss_dims=jg.kl_gauss_dims,
        total_correlation=jg.total_correlation,
        effective_dims=jg.effective_dims,
        condition_number=jg.condition_number,
        eigenvalues=jg.eigenvalues,
        top_pairs=jg.top_pairs,
    )
