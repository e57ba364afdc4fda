"""Finish a :class:`~latentcheck.stream.Stream` through ``analyze``'s own finishing code.

The stream's pass-1 state stands in for ``analyze``'s first pass; its "second pass" is the
seeded sample pushed through a :class:`~latentcheck.engine.plan.SecondPass` about the final mean
and std (so the k-sigma rates about the mean and the Mahalanobis rates are estimates from
the sample), whose prior exceedance counts and extremes are then replaced by the exact ones
the stream counted over every row. Everything else is ``analysis._sample_and_finish``.
"""

from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _validation as v
from .errors import InputError

if TYPE_CHECKING:
    from .report import Report
    from .stream import Stream

__all__ = ["CONV_NOTE", "MODE_NOTE", "finish"]

MODE_NOTE = (
    "single-pass (Stream): moments, covariance, KL, prior outlier rates, extremes and the "
    "seeded sample are exact; outlier rates about the mean, Mahalanobis rates and Mardia's "
    "kurtosis come from the seeded sample of {m} rows; no spatial statistics"
)

CONV_NOTE = (
    "conv latents in a Stream: the normalisation CIs are not widened for spatial "
    "correlation (analyze's second pass measures the design effect), so they are too narrow"
)


def finish(
    stream: Stream,
    *,
    alpha: float = 0.05,
    top_pairs: int = 10,
    joint_samples: int | None = None,
    energy_samples: int | None = None,
    energy_resamples: int | None = None,
    mcd_samples: int | None = None,
    top_rows: int = 10,
    assume_scale: float | None = None,
    assume_shift: float = 0.0,
) -> Report:
    """Return the report of everything pushed into `stream` (see :meth:`Stream.report`)."""
    from . import analysis as an
    from .engine.scheduler import default_chunk_rows

    alpha = v.check_fraction(alpha, "alpha")
    top_pairs = v.check_int(top_pairs, "top_pairs", minimum=0)
    if assume_scale is not None:
        assume_scale = v.check_positive(assume_scale, "assume_scale")
        if assume_scale == 0:
            raise InputError("`assume_scale` must be > 0, got 0")
    assume_shift = v.check_real(assume_shift, "assume_shift")
    jopts = _joint_options(joint_samples, energy_samples, energy_resamples, mcd_samples, top_rows)
    assert stream._layout is not None
    d = stream._layout[2]
    state = stream._first
    with an._analysis_runtime():
        collector = an._Collector()
        for note in stream.notes:
            if "converted" in note:
                collector.messages.append(note)
        moments = state.moments
        nonfinite = state.nonfinite
        n = moments.n
        if n < 2:
            raise InputError(
                f"The stream has {n} rows without NaN or inf out of {stream.n_rows}; at least "
                "2 are needed"
            )
        if nonfinite.rows:
            collector.warn(
                f"{nonfinite.rows} of {stream.n_rows} rows hold NaN or inf values and were "
                "left out of every statistic"
            )
        mean = moments.mean
        std = moments.std()
        degenerate = an.check_dimensions(mean, std, "the stream", collector)
        used = np.flatnonzero(~degenerate)
        joint_reason = an._joint_reason(state, used, d, n, stream.max_joint_dims)
        reservoir, second = _second_pass_on_sample(
            stream, np.where(std > 0, std, 1.0), used, joint_reason, jopts.top_rows
        )
        m = reservoir.rows.shape[0]
        first = types.SimpleNamespace(
            moments=moments,
            comoments=state.comoments,
            nonfinite=nonfinite,
            reservoir=reservoir,
        )
        analysis = an._sample_and_finish(
            source=_stream_source(stream, m),
            first=first,  # type: ignore[arg-type]
            pass2=types.SimpleNamespace(result=lambda: second, cancel=lambda: None),
            n=n,
            d=d,
            mean=mean,
            std=std,
            degenerate=degenerate,
            used=used,
            joint_reason=joint_reason,
            levels=stream.levels,
            test_samples=stream.test_samples,
            sample_size=stream.sample_size,
            alpha=alpha,
            nan=stream.nan,
            top_pairs=top_pairs,
            max_joint_dims=stream.max_joint_dims,
            jopts=jopts,
            chunk_rows=default_chunk_rows(d),
            threads=1,
            seed_used=stream.seed,
            kind="samples",
            aggregate=None,
            posterior=None,
            assume_scale=assume_scale,
            assume_shift=assume_shift,
            collector=collector,
        )
    return _single_pass_report(analysis.report, n, m, int((~degenerate).sum()), alpha)


def _joint_options(
    joint_samples: int | None,
    energy_samples: int | None,
    energy_resamples: int | None,
    mcd_samples: int | None,
    top_rows: int,
) -> Any:
    """Return the validated JointOptions of :func:`finish` (None: the defaults)."""
    from ._joint import (
        DEFAULT_ENERGY_RESAMPLES,
        DEFAULT_ENERGY_SAMPLES,
        DEFAULT_JOINT_SAMPLES,
        DEFAULT_MCD_SAMPLES,
        JointOptions,
    )

    return JointOptions(
        joint_samples=v.check_int(
            DEFAULT_JOINT_SAMPLES if joint_samples is None else joint_samples,
            "joint_samples",
            minimum=3,
        ),
        energy_samples=v.check_int(
            DEFAULT_ENERGY_SAMPLES if energy_samples is None else energy_samples,
            "energy_samples",
            minimum=3,
        ),
        energy_resamples=v.check_int(
            DEFAULT_ENERGY_RESAMPLES if energy_resamples is None else energy_resamples,
            "energy_resamples",
            minimum=0,
        ),
        mcd_samples=v.check_int(
            DEFAULT_MCD_SAMPLES if mcd_samples is None else mcd_samples,
            "mcd_samples",
            minimum=3,
        ),
        top_rows=v.check_int(top_rows, "top_rows", minimum=0),
    )


def _second_pass_on_sample(
    stream: Stream, safe_std: Any, used: Any, joint_reason: str | None, top: int
) -> tuple[Any, Any]:
    """Return the stream's finished sample and a second pass fed with it.

    The exceedances about the final mean and std, and the Mahalanobis distances, come from
    the seeded sample (a single pass has no second look at all rows); the prior's counts
    and the extremes were taken over every row as the batches came.
    """
    from ._joint import JointPass
    from .engine.plan import SecondPassFactory

    assert stream._layout is not None
    d, dtype = stream._layout[2], stream._layout[4]
    state = stream._first
    n, mean = state.moments.n, state.moments.mean
    reservoir = stream._reservoir.merge(  # a copy: finishing leaves the stream as it is
        type(stream._reservoir)(stream.sample_size, d, stream.seed, dtype)
    ).finalize()
    sample, sample_ids = reservoir.rows, reservoir.row_ids
    make_joint = None
    if joint_reason is None and state.comoments is not None:
        make_joint = JointPass.factory(
            used, state.comoments.mean, state.comoments.cov(), n, top=top, third=False
        )
    second = SecondPassFactory(
        stream.levels, mean, safe_std, dtype, joint=make_joint, finite=True
    )()
    # the sample's rows under their own global ids (the joint top rows name them)
    second.push(np.ascontiguousarray(sample), sample_ids)
    second.finish()
    second.prior = stream._prior.merge(stream._prior.__class__.from_state(_empty(stream)))
    second.extremes = stream._extremes.merge(stream._extremes.__class__(d))
    return reservoir, second


def _stream_source(stream: Stream, m: int) -> Any:
    """Return a LatentSource that describes the stream's data (it holds no rows)."""
    from .loading import LatentSource, _Member

    assert stream._layout is not None
    item_shape, axis, d, rows_per_item, dtype = stream._layout
    member = _Member(
        label="stream",
        shape=(stream.n_items, *item_shape),
        dtype=dtype,
        array=np.empty((0, *item_shape), dtype=dtype),
        in_memory=True,
    )
    return LatentSource(
        members=[member],
        item_shape=item_shape,
        channel_axis=axis,
        n_items=stream.n_items,
        rows_per_item=rows_per_item,
        n_dims=d,
        dtype=dtype,
        notes=[
            *stream.notes,
            MODE_NOTE.format(m=m),
            *([CONV_NOTE] if rows_per_item > 1 else []),
        ],
        name="stream",
    )


def _single_pass_report(report: Report, n: int, m: int, n_used: int, alpha: float) -> Report:
    """Return the report with what a single pass computes on the sample said so.

    `m` rows of the sample, `n_used` non-degenerate dimensions of `n` rows in all.
    """
    joint = report.joint
    if "mardia_kurtosis" in joint.tests:
        t = joint.tests["mardia_kurtosis"]
        if t.method:
            method = t.method.replace(f"over all {n} rows", f"on the seeded sample of {m} rows")
            tests = {**joint.tests, "mardia_kurtosis": dataclasses.replace(t, method=method)}
            joint = dataclasses.replace(joint, tests=tests)
    summary = _outliers_on_sample(report, m * n_used, alpha)
    settings = dataclasses.replace(report.settings, mode="single-pass")
    return dataclasses.replace(report, settings=settings, joint=joint, summary=summary)


def _outliers_on_sample(report: Report, n_values: int, alpha: float) -> Any:
    """Return the summary with its outlier finding judged on the sample's values.

    The rates about the mean come from the `n_values` values of the seeded sample, not from
    all rows: counted over all rows, their Poisson test would take n/m times too many
    values and call sampling noise heavy tails.
    """
    from .verdict import outlier_finding

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
