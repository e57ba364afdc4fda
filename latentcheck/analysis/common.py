"""What the analysis steps share: the run's settings, the pass-1 summary, warnings, results.

``analysis_run`` streams the passes of :func:`~latentcheck.analyze` and
``analysis_finish`` turns their states into the report; ``_stream_finish`` feeds a
:class:`~latentcheck.stream.Stream`'s state to the same finishing code. The types they
hand each other live here: :class:`AnalysisRun` (the validated options with every
data-dependent default resolved), :class:`FirstSummary` (what pass 1 says about the data)
and :class:`Analysis` (the result: a report and its sample of rows).
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .. import validation as v
from ..engine.scheduler import single_threaded_blas
from ..errors import DegenerateDimensionWarning, InputError, LatentcheckWarning
from ..options import AnalysisOptions
from .joint import JointOptions

if TYPE_CHECKING:
    from ..engine.accumulators import Reservoir
    from ..engine.plan import FirstPass
    from ..io.posterior import PosteriorJob
    from ..model.report import Report

__all__ = [
    "Analysis",
    "AnalysisRun",
    "Collector",
    "FirstSummary",
    "analysis_runtime",
    "check_dimensions",
    "summarize_first",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AnalysisRun:
    """The options of one analysis, with the defaults that depend on the data resolved.

    Attributes
    ----------
    options : AnalysisOptions
        As validated at the boundary (read `seed`, `sample_size`, `chunk_rows`, `threads`
        from here instead: those are the values used).
    seed, sample_size, chunk_rows, threads : int
        The values used (written into ``settings``).
    kind : str
        ``input.kind``: "samples" or "posterior".
    aggregate : str or None
        ``input.aggregate`` (None: "the given samples").
    posterior : PosteriorJob or None
        The posterior part of the analysis.
    """

    options: AnalysisOptions
    seed: int
    sample_size: int
    chunk_rows: int
    threads: int
    kind: str = "samples"
    aggregate: str | None = None
    posterior: PosteriorJob | None = None

    @property
    def levels(self) -> tuple[float, ...]:
        """The sigma levels of the outlier rates."""
        return self.options.sigma_levels

    @property
    def joint(self) -> JointOptions:
        """The sample sizes of the joint tests."""
        o = self.options
        return JointOptions(
            joint_samples=o.joint_samples,
            energy_samples=o.energy_samples,
            energy_resamples=o.energy_resamples,
            mcd_samples=o.mcd_samples,
            top_rows=o.top_rows,
        )


@dataclass(frozen=True, slots=True)
class FirstSummary:
    """What pass 1 says about the data, as the second pass and the finish need it.

    Attributes
    ----------
    first : FirstPass
        The merged pass-1 state (moments, co-moments, non-finite counts, the sample).
    n, d : int
        Finite rows and dimensions.
    mean, std : ndarray of shape (d,)
    degenerate : ndarray of bool, shape (d,)
        Dimensions of (near-)zero variance.
    used : ndarray of intp
        The other dimensions.
    joint_reason : str or None
        Why the joint statistics cannot run, or None.
    """

    first: FirstPass
    n: int
    d: int
    mean: F64
    std: F64
    degenerate: NDArray[np.bool_]
    used: NDArray[np.intp]
    joint_reason: str | None


@contextlib.contextmanager
def analysis_runtime() -> Iterator[None]:
    """Run the analysis with one BLAS thread and no cyclic GC (both restored after).

    The passes run on our own worker threads, so BLAS threads would only oversubscribe
    the cores, and OpenBLAS's idle threads spin for a while after each threaded call.
    The analysis makes few reference cycles, but its imports and temporaries trigger full
    collections that walk every object scipy created; reference counting still frees
    everything else at once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with single_threaded_blas():
            yield
    finally:
        if enabled:
            gc.enable()


class Collector:
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


def check_dimensions(mean: F64, std: F64, name: str, collector: Collector) -> NDArray[np.bool_]:
    """Return the degenerate-dimension mask, after the overflow and all-constant checks.

    Overflowing moments and all-constant data raise InputError; some constant dimensions
    are a DegenerateDimensionWarning (shared by ``analyze`` and ``Stream.report``).
    """
    v.check_no_overflow(mean, std, name)
    from ..stats.scale import DEGENERATE_RTOL, degenerate_dims

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


def summarize_first(
    first: FirstPass,
    *,
    n_rows: int,
    name: str,
    subject: str,
    max_joint_dims: int,
    collector: Collector,
) -> FirstSummary:
    """Return the pass-1 summary, after the row-count and dimension checks.

    `name` names the data inside a sentence ("the stream"), `subject` at its start ("The
    stream"); `n_rows` counts the rows read, finite or not.
    """
    nonfinite = first.nonfinite
    moments = first.moments
    n = moments.n
    if n < 2:
        raise InputError(
            f"{subject} has {n} rows without NaN or inf out of {n_rows}; at least 2 are needed"
        )
    if nonfinite.rows:
        collector.warn(
            f"{nonfinite.rows} of {n_rows} rows hold NaN or inf values and were "
            "left out of every statistic"
        )
    mean = moments.mean
    std = moments.std()
    d = int(mean.shape[0])
    degenerate = check_dimensions(mean, std, name, collector)
    used = np.flatnonzero(~degenerate)
    return FirstSummary(
        first=first,
        n=n,
        d=d,
        mean=mean,
        std=std,
        degenerate=degenerate,
        used=used,
        joint_reason=_joint_reason(first, used, d, n, max_joint_dims),
    )


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
