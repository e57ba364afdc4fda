"""The finish of an analysis: the sample-based statistics, then the report's blocks.

:func:`finish_analysis` runs while pass 2 still streams: it sorts the seeded sample,
computes what needs only the sample (quantiles, negentropy, the univariate tests, the
histograms, the joint tests on rows), waits for pass 2 when a figure needs it, and
assembles the :class:`~latentcheck.model.report.Report`. Both ``analyze`` (``analysis_run``) and
``Stream.report`` (``_stream_finish``) end here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import validation as v
from ..engine.executor import current_executor, engine_name
from ..engine.segments import current_merge_fanout
from ..errors import SampleQualityWarning
from ..io.latents import LatentSource
from ..io.posterior import POSTERIOR_PART
from ..model.base import created_at
from ..model.checks import SampleChecksBlock
from ..model.posterior import PosteriorBlock
from ..model.report import (
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
from ..model.spatial import SpatialBlock
from .common import Analysis, AnalysisRun, Collector, FirstSummary
from .joint import NullSource, joint_results
from .spatial import (
    IndependentRows,
    all_positions_block,
    check_claim,
    headline_note,
    one_row_per_item,
    spatial_block,
    spatial_shape,
    widen_normalization,
)

__all__ = ["finish_analysis", "histograms", "sorted_quantiles"]

F64 = NDArray[np.float64]


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


@dataclass(slots=True)
class SampleFigures:
    """What the finish computes from the seeded sample (and, for conv latents, pass 2)."""

    sample: NDArray[Any]
    sample_ids: NDArray[np.int64]
    sorted_sample: NDArray[Any]
    quantiles: F64
    checks: Any
    kl_g: F64
    neg: F64
    kl_m: F64
    tests: dict[str, Any]
    n_test: int
    histogram: NDArray[np.int64]
    mad: F64
    spatial: SpatialBlock | None = None
    vif: tuple[Any, Any] | None = None
    independent: IndependentRows | None = None

    @property
    def sample_rows(self) -> int:
        """Rows in the sample."""
        return int(self.sorted_sample.shape[0])


def finish_analysis(
    source: LatentSource,
    run: AnalysisRun,
    s: FirstSummary,
    pass2: Any,
    collector: Collector,
    energy_null: NullSource | None = None,
) -> Analysis:
    """Compute the sample-based statistics (while pass 2 runs), then assemble the report.

    `pass2` has ``result()`` (the merged :class:`~latentcheck.engine.plan.SecondPass`, waited
    for when first needed); `energy_null` the energy test's replicates if drawn in advance.
    """
    post = (
        run.posterior.start(
            seed=run.seed,
            threads=run.threads,
            chunk_rows=run.chunk_rows,
            collect=collector.run,
            fed=s.first.extras.get(POSTERIOR_PART),  # fed by pass 1's draw (issue 22)
        )
        if run.posterior is not None
        else None
    )
    figs = _sample_figures(source, run, s, collector)
    if spatial_shape(source) is not None:
        _conv_tests(source, run, s, pass2, figs, collector)
    joint = _joint_block(source, run, s, pass2, figs, collector, energy_null)
    second = pass2.result()
    centered = second.centered.rates()
    prior = second.prior.rates()
    if s.degenerate.any():
        centered[:, s.degenerate] = np.nan
    norm, claim = _normalization(run, s, figs, second, collector)
    block = post() if post is not None else None
    summary = _summary(run, s, figs, centered, prior, joint, norm, claim)
    dims = _dims(s, figs, second, centered, prior)
    return _assemble(source, run, s, figs, summary, dims, joint, block, collector)


def _sample_figures(
    source: LatentSource, run: AnalysisRun, s: FirstSummary, collector: Collector
) -> SampleFigures:
    """Return the seeded sample's figures: quantiles, KL, negentropy, tests, histograms, MAD."""
    reservoir = s.first.reservoir
    test_samples = run.options.test_samples
    # sorted in the input dtype: each consumer widens only the rows or columns it reads
    # (a float64 copy of a 100,000-row sample costs more in page faults than the sort);
    # column by column, so that the columns that negentropy and the histograms read are
    # contiguous
    if spatial_shape(source) is None:
        # only the first rows in key order are read as rows: the columns come straight
        # from the segments' samples (see Reservoir.split)
        jopts = run.joint
        head = max(test_samples, jopts.joint_samples, jopts.mcd_samples)
        columns, sample, sample_ids = reservoir.split(head)
    else:  # the spatial tests pick their rows from the whole sample, in key order
        reservoir.finalize()
        sample, sample_ids = reservoir.rows, reservoir.row_ids
        # a copy even when sample.T is contiguous (one dimension): sorted in place, a view
        # would sort the rows that the tests read
        columns = np.array(sample.T, order="C")
    columns.sort(axis=1)
    sorted_sample = columns.T
    quantiles = sorted_quantiles(sorted_sample, v.QUANTILE_LEVELS)

    from ..stats import divergence
    from ..stats.duplicates import sample_checks, warnings_for
    from ..stats.normality import univariate_tests
    from ..stats.scale import median_abs_deviation_sorted

    checks = sample_checks(sample, sorted_sample, s.std, n_total=s.n)
    for message in warnings_for(checks, s.d):
        collector.warn(message, SampleQualityWarning)

    kl_g = divergence.kl_gauss(s.mean, s.std)
    neg = np.full(s.d, np.nan)
    ok_cols = np.flatnonzero(~s.degenerate)
    if ok_cols.size:
        neg[ok_cols] = collector.run(
            divergence.negentropy,
            sorted_sample if ok_cols.size == s.d else sorted_sample[:, ok_cols],
            seed=run.seed,
        )
    test_sample = np.asarray(sample[:test_samples], dtype=np.float64)
    tests = collector.run(univariate_tests, test_sample, degenerate=s.degenerate)
    return SampleFigures(
        sample=sample,
        sample_ids=sample_ids,
        sorted_sample=sorted_sample,
        quantiles=quantiles,
        checks=checks,
        kl_g=kl_g,
        neg=neg,
        kl_m=kl_g + neg,
        tests=tests,
        n_test=test_sample.shape[0],
        histogram=histograms(sorted_sample, s.mean, s.std, s.degenerate),  # before pass 2
        mad=median_abs_deviation_sorted(sorted_sample, s.degenerate),
    )


def _conv_tests(
    source: LatentSource,
    run: AnalysisRun,
    s: FirstSummary,
    pass2: Any,
    figs: SampleFigures,
    collector: Collector,
) -> None:
    """Replace the headline tests of conv latents by tests on independent rows (issue 15).

    The headline and joint tests need rows independent across the sample, chosen from the
    spatial autocorrelation of pass 2; the spatial block is filled in `figs` too.
    """
    from ..stats.normality import univariate_tests

    test_samples = run.options.test_samples
    second_early = pass2.result()
    if "spatial" in second_early.extras:
        moments = s.first.moments
        spatial, vif_mean, vif_std, independent, sep_tests = spatial_block(
            second_early.extras,
            var=moments.var(),
            fourth=moments.m4 / moments.n,
            sample=figs.sample,
            row_ids=figs.sample_ids,
            rows_per_item=source.rows_per_item,
            test_samples=test_samples,
            degenerate=s.degenerate,
            run=collector.run,
        )
        spatial["all_positions_tests"] = all_positions_block(figs.tests, figs.n_test)
        spatial["headline_tests"] = headline_note(independent, test_samples)
        figs.spatial = SpatialBlock.from_dict(spatial)
        figs.vif, figs.independent = (vif_mean, vif_std), independent
        figs.tests = sep_tests
        figs.n_test = min(test_samples, independent.rows.shape[0])
    else:
        # a single pass (lc.Stream): no autocorrelation to choose positions by, so the
        # headline and joint tests take one sampled row per item (issue 15 on Stream)
        independent = one_row_per_item(
            figs.sample, figs.sample_ids, source.rows_per_item, len(spatial_shape(source) or ())
        )
        one = np.asarray(independent.rows[:test_samples], dtype=np.float64)
        figs.independent = independent
        figs.tests = collector.run(univariate_tests, one, degenerate=s.degenerate)
        figs.n_test = one.shape[0]


def _joint_block(
    source: LatentSource,
    run: AnalysisRun,
    s: FirstSummary,
    pass2: Any,
    figs: SampleFigures,
    collector: Collector,
    energy_null: NullSource | None = None,
) -> Joint:
    """Return the joint block: second-order figures, then the joint tests on the sample."""
    first = s.first
    joint = _joint(first, s.degenerate, s.joint_reason, run.options.top_pairs, collector)
    if joint.skipped is None and first.comoments is not None:
        jtests, maha, mcd = joint_results(
            sample=figs.sample,
            sample_ids=figs.sample_ids,
            used=s.used,
            n=s.n,
            mean=first.comoments.mean,
            cov=first.comoments.cov(),
            joint_pass=lambda: pass2.result().extras.get("joint"),
            options=run.joint,
            seed=run.seed,
            describe=source.describe_row,
            run=collector.run,
            independent=figs.independent,
            energy_null=energy_null,
        )
        joint = dataclasses.replace(joint, tests=jtests, mahalanobis=maha, mcd=mcd)
    return joint


def _normalization(
    run: AnalysisRun, s: FirstSummary, figs: SampleFigures, second: Any, collector: Collector
) -> tuple[Any, Any]:
    """Return the normalisation constants (widened for conv latents) and the claim check."""
    from ..stats.scale import normalization, pooled_sq_var_from_sample

    first, moments = s.first, s.first.moments
    full_cov = first.comoments.cov() if first.comoments is not None else None
    norm = normalization(
        s.n,
        s.mean,
        moments.m2,
        moments.m4,
        m3=moments.m3,
        cov=full_cov,
        pooled_sq_var=pooled_sq_var_from_sample(figs.sample, float(s.mean.mean())),
    )
    if figs.spatial is not None and figs.vif is not None:
        vif_mean, vif_std = figs.vif
        norm = widen_normalization(norm, vif_mean, vif_std, items=second.extras["items"])
    claim = None
    o = run.options
    if o.assume_scale is not None:
        claim = check_claim(
            norm,
            assume_scale=o.assume_scale,
            assume_shift=o.assume_shift,
            degenerate=s.degenerate,
            run=collector.run,
        )
    return norm, claim


def _summary(
    run: AnalysisRun,
    s: FirstSummary,
    figs: SampleFigures,
    centered: F64,
    prior: F64,
    joint: Joint,
    norm: Any,
    claim: Any,
) -> Summary:
    """Return the summary block (its verdict is judged once the report holds every figure)."""
    levels = run.levels
    levels_arr = np.asarray(levels, dtype=np.float64)
    expected = np.array([math.erfc(k / math.sqrt(2.0)) for k in levels])
    ok_dims = ~s.degenerate
    pooled = (
        np.nansum(centered[:, ok_dims], axis=1) / max(int(ok_dims.sum()), 1)
        if ok_dims.any()
        else np.full(levels_arr.size, np.nan)
    )
    pooled_prior = prior.mean(axis=1)
    alpha = run.options.alpha
    rejected = {name: int(np.sum(t.pvalue_holm < alpha)) for name, t in figs.tests.items()}
    kkeys = [level_key(k) for k in levels]
    return Summary(
        verdict="",  # judged below, once the report holds every figure
        findings=(),
        kl_gauss_sum=float(np.sum(figs.kl_g[ok_dims])),
        negentropy_sum=float(np.nansum(figs.neg[ok_dims])),
        kl_marginal_sum=float(np.nansum(figs.kl_m[ok_dims])),
        outlier_rate=dict(zip(kkeys, pooled.tolist(), strict=True)),
        expected_outlier_rate=dict(zip(kkeys, expected.tolist(), strict=True)),
        outlier_ratio=dict(zip(kkeys, (pooled / expected).tolist(), strict=True)),
        prior_outlier_rate=dict(zip(kkeys, pooled_prior.tolist(), strict=True)),
        dims_rejected=rejected,
        std_range=(float(np.min(s.std)), float(np.max(s.std))),
        effective_dims=joint.effective_dims,
        normalization=norm,
        normalization_check=claim,
        sample_checks=SampleChecksBlock.from_dict(to_jsonable(figs.checks)),
    )


def _dims(s: FirstSummary, figs: SampleFigures, second: Any, centered: F64, prior: F64) -> Dims:
    """Return the per-dimension block."""
    from ..stats.normality import UNIVARIATE_TESTS

    moments, tests = s.first.moments, figs.tests
    return Dims(
        index=np.arange(s.d, dtype=np.int64),
        count=np.full(s.d, s.n, dtype=np.int64),
        mean=s.mean,
        std=s.std,
        min=second.extremes.min,
        max=second.extremes.max,
        quantiles=figs.quantiles,
        skewness=moments.skewness(),
        excess_kurtosis=moments.excess_kurtosis(),
        kl_gauss=figs.kl_g,
        negentropy=figs.neg,
        kl_marginal=figs.kl_m,
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
        degenerate=s.degenerate,
        histogram=figs.histogram,
        mad=figs.mad,
    )


def _settings(run: AnalysisRun, figs: SampleFigures, n: int) -> Settings:
    """Return the settings block: the options used, with the resolved defaults."""
    from ..stats import divergence

    o = run.options
    return Settings(
        seed=run.seed,
        test_samples=o.test_samples,
        sample_size=run.sample_size,
        sample_rows=figs.sample_rows,
        quantiles_exact=figs.sample_rows == n,
        alpha=o.alpha,
        nan_policy=o.nan,
        chunk_rows=run.chunk_rows,
        threads=run.threads,
        sigma_levels=tuple(run.levels),
        quantile_levels=v.QUANTILE_LEVELS,
        max_joint_dims=o.max_joint_dims,
        entropy_estimator=str(divergence.ENTROPY_ESTIMATOR),
        engine=engine_name(current_executor()),
        merge_fanout=current_merge_fanout(),
    )


def _input_info(source: LatentSource, run: AnalysisRun, s: FirstSummary) -> InputInfo:
    """Return the input block."""
    nonfinite = s.first.nonfinite
    return InputInfo(
        sources=_source_labels(source, run),
        kind=run.kind,
        shape=source.shape,
        dtype=str(source.members[0].dtype),
        layout=source.layout(),
        channel_axis=source.channel_axis,
        n_rows_total=source.n_rows,
        n_samples=s.n,
        n_dims=s.d,
        non_finite_rows=int(nonfinite.rows),
        non_finite_values=tuple(int(c) for c in nonfinite.per_dim),
        aggregate=run.aggregate or "the given samples",
        notes=tuple(source.notes),
    )


def _assemble(
    source: LatentSource,
    run: AnalysisRun,
    s: FirstSummary,
    figs: SampleFigures,
    summary: Summary,
    dims: Dims,
    joint: Joint,
    post: PosteriorBlock | None,
    collector: Collector,
) -> Analysis:
    """Return the analysis: the report of every block, its verdict judged last."""
    from .. import __version__

    info = _input_info(source, run, s)
    settings = _settings(run, figs, s.n)
    if not settings.quantiles_exact:
        source.notes.append(
            f"quantiles and negentropy come from a seeded uniform sample of {figs.sample_rows} "
            f"of {s.n} rows"
        )
        info = dataclasses.replace(info, notes=tuple(source.notes))
    source.close()
    report = Report(
        schema_version=SCHEMA_VERSION,
        tool={"name": "latentcheck", "version": __version__},
        created_at=created_at(),
        input=info,
        settings=settings,
        summary=summary,
        dims=dims,
        joint=joint,
        spatial=figs.spatial,
        posterior=post,
        warnings=tuple(collector.messages),
    )
    from ..verdict import judge

    findings = judge(report)
    report = dataclasses.replace(
        report,
        summary=dataclasses.replace(
            summary, findings=findings, verdict=" ".join(f.text for f in findings)
        ),
    )
    return Analysis(report, s.first.reservoir)


def _source_labels(source: LatentSource, run: AnalysisRun) -> tuple[str, ...]:
    """Return the input's labels: the analysed rows, then the posterior's mu and spread."""
    labels = list(source.labels)
    if run.posterior is not None:
        for part in (run.posterior.post.mu, run.posterior.post.spread):
            labels += [x for x in part.labels if x not in labels]
    return tuple(labels)


def histograms(
    sorted_sample: NDArray[Any], mean: F64, std: F64, degenerate: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Return per-dimension counts of the sample's standardised values in HISTOGRAM_EDGES.

    The sample is sorted, so the counts come from one searchsorted per dimension. Bins are
    left-closed; index 0 counts values below -5 std and the last index values at or above 5.
    """
    from ..engine.kernels import exact_threshold
    from ..model.report import HISTOGRAM_EDGES

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


def _joint(
    first: Any,
    degenerate: NDArray[np.bool_],
    reason: str | None,
    top_pairs: int,
    collector: Collector,
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
    from ..stats.scale import joint_gaussian

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
