"""``analyze``: loading → two streaming passes → statistics → :class:`Report`.

The public entry points: :func:`analyze` and :func:`analyze_with_sample` validate their
options once (:class:`~latentcheck.options.AnalysisOptions`), open the inputs and hand
them to ``analysis_run`` (the passes), which ends in ``analysis_finish`` (the statistics
of the sample and the report's blocks). No statistic is computed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .. import validation as v
from ..engine.executor import use_executor
from ..engine.segments import MERGE_FANOUT
from ..errors import InputError
from ..io.latents import open_latents
from ..io.posterior import DrawSource, PosteriorJob, aggregate_description, resolve_inputs
from ..io.remote import with_storage_options
from ..model.report import Report
from ..options import ANALYSIS_OPTIONS, AnalysisOptions, document
from ..options import DEFAULT_SAMPLE_SIZE as DEFAULT_SAMPLE_SIZE
from ..options import SAMPLE_BUDGET as SAMPLE_BUDGET
from .common import Analysis as Analysis
from .common import check_dimensions as check_dimensions
from .finish import sorted_quantiles as sorted_quantiles
from .run import analyze_source, resolve_run

__all__ = ["Analysis", "analyze", "analyze_with_sample", "sorted_quantiles"]

#: the defaults of every option, as :class:`AnalysisOptions` defines them
DEFAULTS = AnalysisOptions()
#: the option names in the order of analyze's signature
OPTION_NAMES = tuple(ANALYSIS_OPTIONS)


@document(ANALYSIS_OPTIONS, OPTION_NAMES)
def analyze(
    latents: Any = None,
    *,
    mu: Any = None,
    logvar: Any = None,
    std: Any = None,
    var: Any = None,
    key: str | None = DEFAULTS.key,
    channel_axis: int = DEFAULTS.channel_axis,
    flatten: bool = DEFAULTS.flatten,
    per_sample: bool | None = DEFAULTS.per_sample,
    seed: int | None = DEFAULTS.seed,
    test_samples: int = DEFAULTS.test_samples,
    sample_size: int | None = DEFAULTS.sample_size,
    alpha: float = DEFAULTS.alpha,
    nan: str = DEFAULTS.nan,
    sigma_levels: Sequence[float] | None = DEFAULTS.sigma_levels,
    top_pairs: int = DEFAULTS.top_pairs,
    max_joint_dims: int = DEFAULTS.max_joint_dims,
    joint_samples: int = DEFAULTS.joint_samples,
    energy_samples: int = DEFAULTS.energy_samples,
    energy_resamples: int = DEFAULTS.energy_resamples,
    mcd_samples: int = DEFAULTS.mcd_samples,
    top_rows: int = DEFAULTS.top_rows,
    active_threshold: float = DEFAULTS.active_threshold,
    collapse_threshold: float = DEFAULTS.collapse_threshold,
    mixture_samples: int = DEFAULTS.mixture_samples,
    assume_scale: float | None = DEFAULTS.assume_scale,
    assume_shift: float = DEFAULTS.assume_shift,
    chunk_rows: int | None = DEFAULTS.chunk_rows,
    threads: int | None = DEFAULTS.threads,
    progress: bool | None = DEFAULTS.progress,
    allow_few_rows: bool = DEFAULTS.allow_few_rows,
    storage_options: Mapping[str, Any] | None = None,
    executor: Any = None,
    merge_fanout: int | str = MERGE_FANOUT,
    options: AnalysisOptions | None = None,
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
    {options}
    storage_options : dict or None, default=None
        fsspec options (credentials, endpoint…) for paths with a protocol (``s3://``,
        ``memory://``…; see :func:`~latentcheck.io.latents.open_latents`); never reported.
    executor : concurrent.futures.Executor or None, default=None
        Run the passes as tasks on this executor (a ``ProcessPoolExecutor``, or
        ``Client(...).get_executor()`` of ``dask.distributed``): one task per segment of
        chunks, whose pickle-free accumulator states are merged here along a fixed tree, so
        the report equals the local one to the last bit (at the same `merge_fanout`). The data
        must be readable where the tasks run (files by path; arrays travel with each
        task). ``settings.engine`` names it. None runs them here (threads or forked
        worker processes).
    merge_fanout : int or "linear", default=8
        The fan-out of the fixed tree along which the segments' accumulators are merged
        (runs of this many consecutive segments, level by level; "linear": one chain in
        segment order). The report depends on it at rounding level only and on nothing
        else of the engine: any executor and number of workers gives the same bits for
        the same fan-out. ``settings.merge_fanout`` records it.
    options : AnalysisOptions or None, default=None
        All the options above at once (validated when it was made); keyword options
        given with a value other than their default replace its fields.

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
    given = {name: value for name, value in locals().items() if name in ANALYSIS_OPTIONS}
    opts = AnalysisOptions.merged(options, given)
    from ..profiles import is_profile_input, report_profiles

    if is_profile_input(latents):  # saved profiles (issue 19): merged, then finished
        post = {"mu": mu, "logvar": logvar, "std": std, "var": var}
        rep: Report = report_profiles(latents, **post, **opts.as_dict())
        # merged in the profiles' order, not along the engine's tree
        return dataclasses.replace(
            rep, settings=dataclasses.replace(rep.settings, merge_fanout=None)
        )
    with use_executor(executor, merge_fanout=merge_fanout):
        return analyze_with_sample(
            latents,
            mu=mu,
            logvar=logvar,
            std=std,
            var=var,
            options=opts,
            storage_options=storage_options,
        ).report


@with_storage_options
def analyze_with_sample(
    latents: Any = None,
    *,
    mu: Any = None,
    logvar: Any = None,
    std: Any = None,
    var: Any = None,
    options: AnalysisOptions | None = None,
    **kwargs: Any,
) -> Analysis:
    """Run :func:`analyze` and also return the seeded sample of rows.

    ``compare`` uses the samples of two data sets for its two-sample tests. Parameters are
    those of :func:`analyze`: the options as keywords (`kwargs`), or as `options` (with
    `kwargs` replacing some of its fields).
    """
    if options is None:
        opts = AnalysisOptions(**kwargs)
    elif not isinstance(options, AnalysisOptions):
        raise InputError(f"`options` must be an AnalysisOptions, got a {type(options).__name__}")
    else:
        opts = options.replace(**kwargs) if kwargs else options
    seed = v.draw_seed() if opts.seed is None else opts.seed  # the one seed of this analysis
    read: dict[str, Any] = {
        "key": opts.key,
        "channel_axis": opts.channel_axis,
        "flatten": opts.flatten,
        "per_sample": opts.per_sample,
    }
    z_source, post = resolve_inputs(latents, mu=mu, logvar=logvar, std=std, var=var, **read)
    if post is None:
        if latents is None:
            raise InputError(
                "No input given: pass latents (samples), or `mu` with `logvar`, `std` or `var`"
            )
        source = open_latents(latents, **read)
        return analyze_source(source, resolve_run(source, opts, seed=seed))
    job = PosteriorJob(
        post,
        active_threshold=opts.active_threshold,
        collapse_threshold=opts.collapse_threshold,
        mixture_samples=opts.mixture_samples,
    )
    source = z_source if z_source is not None else DrawSource(post, seed)
    run = resolve_run(
        source,
        opts,
        seed=seed,
        kind="posterior",
        aggregate=aggregate_description(post, seed),
        posterior=job,
    )
    return analyze_source(source, run)
