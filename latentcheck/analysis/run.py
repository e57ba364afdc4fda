"""The two streaming passes of an analysis, from an opened source to the finish.

:func:`analyze_source` resolves the options' data-dependent defaults (:func:`resolve_run`),
streams pass 1 (moments, co-moments, the seeded sample), checks what it found, starts
pass 2 (rates about the final mean and std, Mahalanobis and Mardia sums, spatial
statistics) on the workers, and hands both to ``analysis_finish`` while pass 2 runs.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import types
from typing import Any

import numpy as np

from .. import validation as v
from ..engine.accumulators import key_threshold
from ..engine.executor import current_executor
from ..engine.kernels import Scratch
from ..engine.plan import FirstPass, SecondPassFactory
from ..engine.scheduler import (
    default_chunk_rows,
    default_threads,
    run_pass,
    segment_cap,
    segments_of,
    start_pass,
)
from ..engine.workers import WorkerPool
from ..errors import InputError
from ..io.latents import LatentSource, plan_blocks
from ..io.posterior import DrawSource, PosteriorFeed, PosteriorJob
from ..options import AnalysisOptions, default_sample_size
from .common import (
    Analysis,
    AnalysisRun,
    Collector,
    FirstSummary,
    analysis_runtime,
    summarize_first,
)
from .energy_null import ForkedNull
from .finish import finish_analysis
from .joint import JointPass
from .spatial import spatial_factory, spatial_shape

__all__ = ["Progress", "analyze_source", "import_sample_statistics", "resolve_run"]


class Progress:
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
        """Count `n` more rows done and redraw the bar when its percentage changes."""
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
        """Erase the bar."""
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def resolve_run(
    source: LatentSource,
    options: AnalysisOptions,
    *,
    seed: int,
    kind: str = "samples",
    aggregate: str | None = None,
    posterior: PosteriorJob | None = None,
) -> AnalysisRun:
    """Return the run of `options` on `source`, after the checks of its row count.

    `seed` is the seed used (drawn already when ``options.seed`` is None); the sample
    size, chunk size and workers left to the defaults are chosen for the source's width.
    """
    d = source.n_dims
    sample_size = options.sample_size
    if sample_size is None:
        # the joint tests take what the sample holds: only the univariate tests set a floor
        # (more than the default's 100 000 rows of them need an explicit sample_size)
        sample_size = v.check_int(
            default_sample_size(options.test_samples, d),
            "sample_size",
            minimum=options.test_samples,
        )
    chunk_rows = default_chunk_rows(d) if options.chunk_rows is None else options.chunk_rows
    threads = default_threads() if options.threads is None else options.threads
    v.check_row_count(source.n_rows, source.name)
    v.check_rows_vs_dims(
        source.n_rows, d, source.name, shape=source.shape, allow=bool(options.allow_few_rows)
    )
    return AnalysisRun(
        options=options,
        seed=seed,
        sample_size=sample_size,
        chunk_rows=chunk_rows,
        threads=threads,
        kind=kind,
        aggregate=aggregate,
        posterior=posterior,
    )


@analysis_runtime()
def analyze_source(source: LatentSource, run: AnalysisRun) -> Analysis:
    """Run :func:`~latentcheck.analyze` on an opened :class:`LatentSource`; keep the sample."""
    d = source.n_dims
    collector = Collector()
    for note in source.notes:
        if "converted" in note:
            collector.messages.append(note)

    ranges = plan_blocks([source], run.chunk_rows)
    bar = Progress(run.options.progress, 2 * source.n_items, "latentcheck")
    if isinstance(source, DrawSource) and current_executor() is None:
        source.keep_draws()  # pass 2 reads back what pass 1 drew (shared by the fork)
    # forked now, while this process holds little that it could later copy-on-write
    # room for the sample a worker sends back (see engine.workers.Arena): the rows whose key
    # passes the prefilter (about sample_size + 8 sqrt(sample_size)), with their keys and
    # row ids, should the worker stream every segment
    room = int(1.02 * (run.sample_size + 8 * math.sqrt(run.sample_size))) + 1024
    arena = min(source.n_rows, room) * (d * source.dtype.itemsize + 16)
    feed = _posterior_feed(source, run, ranges)
    if feed is not None:  # and the posterior's rate states and sample rows
        rate, sample = feed.state_bytes(source.n_rows)
        arena += len(segments_of(ranges, _first_cap(d, run))) * rate + sample
    pool = WorkerPool.maybe(source, run.threads, bar if bar.enabled else None, arena)
    energy_null: ForkedNull | None = None
    try:
        make_first = functools.partial(
            FirstPass,
            d,
            dtype=source.dtype,
            seed=run.seed,
            sample_size=run.sample_size,
            covariance=d <= run.options.max_joint_dims,
            key_threshold=key_threshold(source.n_rows, run.sample_size),
            scratch=Scratch(),  # one set of blocks per worker for all its segments
            extras=feed,
        )
        first = _first_pass(source, run, ranges, make_first, bar, pool)
        if isinstance(source, DrawSource):
            source.seal_draws()  # pass 1 drew every row
        s = _check_first(source, run, first, collector)
        if pool is None and spatial_shape(source) is None and s.joint_reason is None:
            # the energy test's replicates on the idle core from now, before pass 2's
            # thread starts (issue 22; see energy_null)
            energy_null = ForkedNull.maybe(
                rows=first.reservoir.size,
                d=int(s.used.size),
                options=run.joint,
                seed=run.seed,
                threads=run.threads,
            )
        pass2 = _start_second_pass(source, run, s, ranges, bar, pool)
        try:
            # the segments' samples are merged later (Reservoir.split), while pass 2 runs
            if not first.reservoir.complete():  # p < 1e-15: the prefilter was too tight
                first.reservoir = run_pass(
                    source,
                    ranges,
                    functools.partial(make_first, key_threshold=None, extras=None),
                    threads=max(1, run.threads - 1),
                    max_segments=_first_cap(d, run),
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
        if energy_null is not None:
            energy_null.close()
        bar.close()
        raise
    try:
        result = finish_analysis(source, run, s, pass2, collector, energy_null)
    except BaseException:
        pass2.cancel()
        raise
    finally:
        if pool is not None:
            pool.close()
        if energy_null is not None:  # no child outlives the analysis
            energy_null.close()
        bar.close()
    return result


def _first_cap(d: int, run: AnalysisRun) -> int:
    """Return the most segments of pass 1 (each holds a co-moment matrix)."""
    covariance = d <= run.options.max_joint_dims
    return segment_cap(8 * d * d if covariance else 64 * d)


def _posterior_feed(
    source: LatentSource, run: AnalysisRun, ranges: list[tuple[int, int]]
) -> PosteriorFeed | None:
    """Return the extras through which pass 1 feeds the posterior's rate, or None.

    Posterior mode without a given z draws z from mu and logvar in pass 1: the same
    reads then feed the rate (issue 22), when pass 1 streams the segments of the
    posterior's own pass (which fix the rate's last bits; see ``PosteriorJob.feed``).
    """
    if run.posterior is None:
        return None
    segments = segments_of(ranges, _first_cap(source.n_dims, run))
    return run.posterior.feed(source, segments, seed=run.seed, chunk_rows=run.chunk_rows)


def _first_pass(
    source: LatentSource,
    run: AnalysisRun,
    ranges: Any,
    make_first: Any,
    bar: Progress,
    pool: WorkerPool | None,
) -> FirstPass:
    """Stream pass 1 and return its merged state.

    With a worker process streaming, this process first imports what the sample
    statistics need and then takes the segments of pass 1 still left.
    """
    pass1 = start_pass(
        source,
        ranges,
        make_first,
        threads=run.threads,
        progress=bar,
        pool=pool,
        in_caller=pool is not None,
        defer=True,
        shared_results=True,  # the workers' samples come back through shared memory
        max_segments=_first_cap(source.n_dims, run),
    )
    try:
        if pool is not None:
            import_sample_statistics()
        first: FirstPass = pass1.result()
    except BaseException:
        pass1.cancel()
        raise
    return first


def _check_first(
    source: LatentSource, run: AnalysisRun, first: FirstPass, collector: Collector
) -> FirstSummary:
    """Return the pass-1 summary, refusing non-finite values under ``nan="error"``."""
    nonfinite = first.nonfinite
    if nonfinite.rows and run.options.nan == "error":
        raise InputError(
            f"{source.name} has {int(nonfinite.per_dim.sum())} non-finite values in "
            f"{nonfinite.rows} rows (first at row {nonfinite.first_row}, dimension "
            f"{nonfinite.first_dim}); use --nan omit to leave those rows out"
        )
    return summarize_first(
        first,
        n_rows=source.n_rows,
        name=source.name,
        subject=source.name,
        max_joint_dims=run.options.max_joint_dims,
        collector=collector,
    )


def _start_second_pass(
    source: LatentSource,
    run: AnalysisRun,
    s: FirstSummary,
    ranges: Any,
    bar: Progress,
    pool: WorkerPool | None,
) -> Any:
    """Start pass 2 on the workers and return its handle (``result()``, ``cancel()``).

    Pass 2 streams while this process computes what needs only the sample (tests,
    negentropy, MCD); with worker processes, it then takes the segments of pass 2 still
    left when the joint results first need the pass.
    """
    first = s.first
    safe_std = np.where(s.std > 0, s.std, 1.0)
    make_joint = None
    third = False
    if s.joint_reason is None and first.comoments is not None:
        from ..stats.joint.multivariate import mardia_third_order_affordable

        # conv latents: Mardia's tests run on separated rows (_joint._independent_tests)
        third = spatial_shape(source) is None and mardia_third_order_affordable(s.n, s.used.size)
        make_joint = JointPass.factory(
            s.used,
            first.comoments.mean,
            first.comoments.cov(),
            s.n,
            top=run.options.top_rows,
            third=third,
        )
    make_second = SecondPassFactory(
        run.levels,
        s.mean,
        safe_std,
        source.dtype,
        joint=make_joint,
        spatial=spatial_factory(source, s.mean, safe_std, run.levels),
        finite=first.nonfinite.rows == 0,
    )
    # Mardia's third-order sums are the largest part of a segment's pass-2 state
    state2 = 4 * s.used.size**2 * (s.used.size + 1) if third else 64 * s.d
    return start_pass(
        source,
        ranges,
        make_second,
        threads=max(1, run.threads - 1),
        progress=bar,
        pool=pool,
        in_caller=pool is not None,
        defer=True,
        max_segments=segment_cap(state2),
    )


def import_sample_statistics() -> None:
    """Import what the rest of the analysis needs, while the worker streams pass 1.

    scipy.stats and statsmodels' Lilliefors test for the sample tests, and this package's
    statistics modules: imported later, between the passes, they kept the worker idle.
    """
    from .. import verdict
    from ..stats import divergence, normality, scale
    from ..stats.joint import mardia, multivariate, outliers, whitening

    del divergence, mardia, multivariate, outliers, scale, whitening, verdict
    normality.import_dependencies()
