"""Finish a :class:`~latentcheck.stream.Stream` through ``analyze``'s own finishing code.

The stream's pass-1 state stands in for ``analyze``'s first pass; its "second pass" is the
seeded sample pushed through a :class:`~latentcheck.engine.plan.SecondPass` about the final mean
and std (so the k-sigma rates about the mean and the Mahalanobis rates are estimates from
the sample), whose prior exceedance counts and extremes are then replaced by the exact ones
the stream counted over every row. Everything else is ``analysis_finish.finish_analysis``.
"""

from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Any

import numpy as np

from ..options import AnalysisOptions

if TYPE_CHECKING:
    from ..model.report import Report
    from ..stream import Stream
    from .common import AnalysisRun, FirstSummary

__all__ = ["CONV_NOTE", "FINISH_OPTIONS", "MODE_NOTE", "finish", "stream_options"]

MODE_NOTE = (
    "single-pass (Stream): moments, covariance, KL, prior outlier rates, extremes and the "
    "seeded sample are exact; outlier rates about the mean, Mahalanobis rates and Mardia's "
    "kurtosis come from the seeded sample of {m} rows; no spatial statistics"
)

CONV_NOTE = (
    "conv latents in a Stream: the normalisation CIs are not widened for spatial "
    "correlation (analyze's second pass measures the design effect), so they are too narrow"
)


#: the options of :meth:`Stream.report` (the others are fixed when the stream is made)
FINISH_OPTIONS = (
    "alpha",
    "top_pairs",
    "joint_samples",
    "energy_samples",
    "energy_resamples",
    "mcd_samples",
    "top_rows",
    "assume_scale",
    "assume_shift",
)


def stream_options(stream: Stream, **finishing: Any) -> AnalysisOptions:
    """Return the analysis options of `stream` with the finishing options given.

    `finishing` takes the keywords of :data:`FINISH_OPTIONS`; None leaves the sample
    sizes of the joint tests at their defaults. The stream's own settings were validated
    when it was made.
    """
    unknown = sorted(set(finishing) - set(FINISH_OPTIONS))
    if unknown:
        raise TypeError(
            f"Stream.report() got unexpected keyword arguments {', '.join(unknown)}; "
            f"it takes {', '.join(FINISH_OPTIONS)}"
        )
    optional = ("joint_samples", "energy_samples", "energy_resamples", "mcd_samples")
    given = {k: x for k, x in finishing.items() if x is not None or k not in optional}
    return AnalysisOptions(
        channel_axis=stream.channel_axis,
        flatten=stream.flatten,
        seed=stream.seed,
        test_samples=stream.test_samples,
        sample_size=stream.sample_size,
        nan=stream.nan,
        sigma_levels=stream.levels,
        max_joint_dims=stream.max_joint_dims,
        threads=1,
        **given,
    )


def finish(stream: Stream, **finishing: Any) -> Report:
    """Return the report of everything pushed into `stream` (see :meth:`Stream.report`)."""
    from ..engine.scheduler import default_chunk_rows
    from .common import AnalysisRun, Collector, analysis_runtime, summarize_first
    from .finish import finish_analysis

    options = stream_options(stream, **finishing)
    assert stream._layout is not None
    _, _, d, _, _ = stream._layout
    run = AnalysisRun(
        options=options,
        seed=stream.seed,
        sample_size=stream.sample_size,
        chunk_rows=default_chunk_rows(d),
        threads=1,
    )
    with analysis_runtime():
        collector = Collector()
        for note in stream.notes:
            if "converted" in note:
                collector.messages.append(note)
        s = summarize_first(
            stream._first,
            n_rows=stream.n_rows,
            name="the stream",
            subject="The stream",
            max_joint_dims=stream.max_joint_dims,
            collector=collector,
        )
        source, first, second = _stand_ins(stream, s, run)
        s = dataclasses.replace(s, first=first)
        pass2 = types.SimpleNamespace(result=lambda: second, cancel=lambda: None)
        analysis = finish_analysis(source, run, s, pass2, collector)
    n, m = s.n, first.reservoir.rows.shape[0]
    degenerate, alpha = s.degenerate, options.alpha
    report = analysis.report
    joint = report.joint
    if "mardia_kurtosis" in joint.tests:
        t = joint.tests["mardia_kurtosis"]
        if t.method:
            method = t.method.replace(f"over all {n} rows", f"on the seeded sample of {m} rows")
            tests = {**joint.tests, "mardia_kurtosis": dataclasses.replace(t, method=method)}
            joint = dataclasses.replace(joint, tests=tests)
    summary = _outliers_on_sample(report, m * int((~degenerate).sum()), alpha)
    # the stream's states are merged as its caller merges them, not by the engine
    settings = dataclasses.replace(report.settings, mode="single-pass", merge_fanout=None)
    return dataclasses.replace(report, settings=settings, joint=joint, summary=summary)


def _stand_ins(stream: Stream, s: FirstSummary, run: AnalysisRun) -> tuple[Any, Any, Any]:
    """Return the source, first pass and second pass that stand in for analyze's.

    The first pass holds the stream's state with a copy of its sample; the second pass
    is that sample pushed through a SecondPass about the final mean and std, with the
    prior exceedance counts and extremes the stream counted over every row.
    """
    from ..engine.plan import SecondPassFactory
    from ..io.latents import LatentSource
    from ..io.member import Member
    from .joint import JointPass

    assert stream._layout is not None
    item_shape, axis, d, rows_per_item, dtype = stream._layout
    state = stream._first
    reservoir = stream._reservoir.merge(  # a copy: finishing leaves the stream as it is
        type(stream._reservoir)(stream.sample_size, d, stream.seed, dtype)
    ).finalize()
    sample, sample_ids = reservoir.rows, reservoir.row_ids
    make_joint = None
    if s.joint_reason is None and state.comoments is not None:
        make_joint = JointPass.factory(
            s.used,
            state.comoments.mean,
            state.comoments.cov(),
            s.n,
            top=run.options.top_rows,
            third=False,
        )
    safe_std = np.where(s.std > 0, s.std, 1.0)
    second = SecondPassFactory(
        stream.levels, s.mean, safe_std, dtype, joint=make_joint, finite=True
    )()
    # the sample's rows under their own global ids (the joint top rows name them)
    second.push(np.ascontiguousarray(sample), sample_ids)
    second.finish()
    second.prior = stream._prior.merge(stream._prior.__class__.from_state(_empty(stream)))
    second.extremes = stream._extremes.merge(stream._extremes.__class__(d))

    member = Member(
        label="stream",
        shape=(stream.n_items, *item_shape),
        dtype=dtype,
        array=np.empty((0, *item_shape), dtype=dtype),
        in_memory=True,
    )
    source = LatentSource(
        members=[member],
        item_shape=item_shape,
        channel_axis=axis,
        n_items=stream.n_items,
        rows_per_item=rows_per_item,
        n_dims=d,
        dtype=dtype,
        notes=[
            *stream.notes,
            MODE_NOTE.format(m=sample.shape[0]),
            *([CONV_NOTE] if rows_per_item > 1 else []),
        ],
        name="stream",
    )
    first = types.SimpleNamespace(
        moments=state.moments,
        comoments=state.comoments,
        nonfinite=state.nonfinite,
        reservoir=reservoir,
    )
    return source, first, second


def _outliers_on_sample(report: Report, n_values: int, alpha: float) -> Any:
    """Return the summary with its outlier finding judged on the sample's values.

    The rates about the mean come from the `n_values` values of the seeded sample, not from
    all rows: counted over all rows, their Poisson test would take n/m times too many
    values and call sampling noise heavy tails.
    """
    from ..verdict import outlier_finding

    sm = report.summary
    rates = np.array(list(sm.outlier_rate.values()), dtype=np.float64)
    expected = np.array(list(sm.expected_outlier_rate.values()), dtype=np.float64)
    levels = np.asarray(report.settings.sigma_levels, dtype=np.float64)
    new = outlier_finding(rates, expected, levels, n_values, alpha)
    findings = tuple(new if f.aspect == "outliers" else f for f in sm.findings)
    verdict = " ".join(f.text for f in findings)
    return dataclasses.replace(sm, findings=findings, verdict=verdict)


def _empty(stream: Stream) -> dict[str, Any]:
    """Return the state of an empty prior-exceedance accumulator like the stream's."""
    out = dict(stream._prior.state())
    out["n"] = np.array(0, dtype=np.int64)
    out["upper"] = np.zeros_like(out["upper"])
    out["lower"] = np.zeros_like(out["lower"])
    return out
