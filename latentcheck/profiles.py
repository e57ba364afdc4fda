"""Saved, mergeable profiles: ``latentcheck profile`` and ``.lcprof`` files (issue 19).

A :class:`Profile` is a :class:`~latentcheck.stream.Stream`'s pass-1 state (moments,
co-moments, non-finite counts, the seeded bottom-k sample keyed by a hash of the *global*
row id, exact prior exceedance counts and extremes) plus, per dimension, one KLL quantile
sketch (Apache DataSketches' ``kll_doubles_sketch``, [1]_) and two REQ relative-error
sketches for the tails (``req_floats_sketch``, [3]_). Profiles of shards of one
data set merge, in any order and grouping, into the profile of the whole: every figure of
the pass-1 state and every test on the seeded sample is then exactly what
:func:`latentcheck.analyze` reports on the concatenated shards (the shards must carry their
global row offsets). Figures that need the *final* mean and std over all rows — the k-σ
outlier rates about the mean — are read off the merged sketches' CDF at mean ± k·std,
within the sketches' stated error.

Rank error. KLL with parameter ``k`` answers a rank (CDF) query within an additive
normalised rank error ε(k) with 99 % confidence, and a two-sided (PMF) query, such as the
mass outside [mean − k·std, mean + k·std], within ε_pmf(k) [1]_, [2]_. The default
``k = 2000`` gives ε = 0.142 % and ε_pmf = 0.188 % (``kll_doubles_sketch.
get_normalized_rank_error``); a sketch that has seen fewer rows than it can hold is exact.
That additive error is as large as a 3σ tail (0.27 %) and dwarfs a 4σ one (0.0063 %), so
the tails also go into REQ sketches, whose rank error is relative to the tail mass (at
high ranks in one, low ranks in the other): each outlier rate comes from whichever sketch
states the smaller error, REQ's own 3-standard-deviation rank bounds or KLL's ε_pmf, and
the report gives the bound (``settings.profile.outlier_rate_error``). REQ holds float32
values. Both sketches compact with unseeded coins, so the sketch figures vary between runs
within those bounds; every other figure is reproducible.

File format: see :mod:`latentcheck.io.profile_format`.

References
----------
.. [1] Karnin, Lang and Liberty, "Optimal quantile approximation in streams", FOCS 2016,
       doi:10.1109/FOCS.2016.17.
.. [2] Apache DataSketches, "KLL sketch", https://datasketches.apache.org/docs/KLL/KLLSketch.html
.. [3] Cormode, Karnin, Liberty, Thaler and Veselý, "Relative error streaming quantiles",
       PODS 2021, doi:10.1145/3452021.3458323.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import validation as v
from .analysis.stream_finish import MODE_NOTE
from .errors import FormatError, InputError
from .io.profile_format import FORMAT_VERSION, decode, encode, kll, rank_error, req
from .io.remote import with_storage_options
from .options import ANALYSIS_OPTIONS as OPTIONS

__all__ = [
    "DEFAULT_SKETCH_K",
    "FORMAT_VERSION",
    "PROFILE_SUFFIX",
    "Profile",
    "is_profile_input",
    "profile",
    "rank_error",
]

PROFILE_SUFFIX = ".lcprof"
#: KLL parameter: ε = 0.142 % (rank), 0.188 % (two-sided mass), 99 % confidence.
DEFAULT_SKETCH_K = 2000
#: REQ parameter of the tail sketches (DataSketches' default).
REQ_K = 12
PROFILE_NOTE = (
    "merged from {p} saved profile(s): moments, covariance, KL, prior outlier rates and "
    "extremes are exact, the seeded sample (quantiles; tests for 2-D latents) is analyze's; "
    "outlier rates about the mean are sketch estimates over all rows (KLL k={k} or REQ "
    "tail sketches, within settings.profile.outlier_rate_error, at most {e:.3g}%); "
    "Mahalanobis rates and Mardia's kurtosis come from the seeded sample; no "
    "spatial statistics"
)


class Profile:
    """A saved, mergeable pass-1 state of a data set (or shard) with quantile sketches.

    Build one with :func:`profile`, read one with :meth:`load`; :meth:`merge` profiles of
    shards of one data set and :meth:`report` the whole.

    Attributes
    ----------
    stream : Stream
        The pass-1 state (see :class:`~latentcheck.stream.Stream`).
    sketches : list
        One ``datasketches.kll_doubles_sketch`` per dimension, over the finite rows.
    rows : list of (int, int)
        The global row ranges ``[start, stop)`` held.
    sources : list of str
        Names of the profiled inputs.
    low, high : list
        Per dimension, the ``datasketches.req_floats_sketch`` accurate at low ranks (the
        lower tail) and the one accurate at high ranks (the upper tail).
    """

    def __init__(
        self,
        stream: Any,
        sketches: list[Any],
        rows: list[tuple[int, int]],
        sources: list[str],
        low: list[Any],
        high: list[Any],
    ) -> None:
        self.stream = stream
        self.sketches = sketches
        self.rows = sorted(rows)
        self.sources = sources
        self.low = low
        self.high = high

    def __repr__(self) -> str:
        return (
            f"<Profile: {self.stream.n_rows} rows x {self.stream.n_dims} dims in "
            f"{len(self.rows)} range(s), KLL k={self.sketch_k}>"
        )

    @property
    def sketch_k(self) -> int:
        """The KLL parameter k of the sketches."""
        return int(self.sketches[0].k)

    # -- merging ------------------------------------------------------------------------
    def merge(self, *others: Profile) -> Profile:
        """Return the merge of this profile and `others` (none of them is changed).

        ``Profile.merge(a, b, c)`` and ``a.merge(b, c)`` are the same. Inputs are merged in
        the order of their first global row, so a flat list gives the same sketches
        whatever its order.

        Raises
        ------
        InputError
            Profiles whose row ranges overlap (shards profiled without their
            ``row_offset``), or of different widths, dtypes or settings.
        """
        from .stream import Stream

        parts = sorted([self, *others], key=lambda p: p.rows[0])
        for p in parts:
            if not isinstance(p, Profile):
                raise InputError(f"Can only merge Profiles, got a {type(p).__name__}")
        _check_disjoint(parts)
        ks = {p.sketch_k for p in parts}
        if len(ks) > 1:
            raise InputError(f"Cannot merge profiles with different sketch sizes k: {sorted(ks)}")
        stream = Stream.from_state(parts[0].stream.state())
        first = parts[0]
        families = [
            [cls.deserialize(s.serialize()) for s in fam]
            for cls, fam in ((kll(), first.sketches), (req(), first.low), (req(), first.high))
        ]
        for p in parts[1:]:
            stream = stream.merge(p.stream, rows_disjoint=True)
            for mine, theirs in zip(families, (p.sketches, p.low, p.high), strict=True):
                for a, b in zip(mine, theirs, strict=True):
                    a.merge(b)
        rows = [r for p in parts for r in p.rows]
        sources = [s for p in parts for s in p.sources]
        return Profile(stream, families[0], rows, sources, families[1], families[2])

    # -- figures ------------------------------------------------------------------------
    def quantiles(self, levels: Sequence[float]) -> NDArray[np.float64]:
        """Return sketch quantiles of shape (len(levels), n_dims) over all finite rows."""
        q = [np.asarray(s.get_quantiles(list(map(float, levels))), float) for s in self.sketches]
        return np.stack(q, axis=1)

    def outside_rates(
        self, mean: NDArray[np.float64], std: NDArray[np.float64], levels: Sequence[float]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return sketch estimates of P(|z − mean| > k·std) and their error bounds.

        Both of shape (len(levels), n_dims). Each estimate comes from the sketch with the
        smaller stated error: the REQ tail sketches (lower tail from the low-rank-accurate
        one, upper from the high-rank-accurate one; bound: the sum of the two ranks' 3
        standard-deviation bounds that REQ itself gives, relative to the tail mass [3]_) or
        the KLL sketch (one minus its mass in [mean − k·std, mean + k·std]; bound: the
        two-sided rank error at 99 % confidence). Values on the bounds count as inside.
        """
        shape = (len(levels), len(self.sketches))
        rates, errors = np.full(shape, np.nan), np.full(shape, np.nan)
        ks = np.asarray(levels, dtype=np.float64)
        eps = rank_error(self.sketch_k)
        for j, s in enumerate(self.sketches):
            if s.is_empty() or not std[j] > 0:
                continue
            lo, hi = mean[j] - ks * std[j], mean[j] + ks * std[j]
            by_kll = _cdf(s, lo, False) + 1.0 - _cdf(s, hi, True)
            r_lo = _cdf(self.low[j], lo.astype(np.float32), False)
            r_hi = _cdf(self.high[j], hi.astype(np.float32), True)
            err = _req_error(self.low[j], r_lo) + _req_error(self.high[j], r_hi)
            use_req = err <= eps
            rates[:, j] = np.where(use_req, r_lo + 1.0 - r_hi, by_kll)
            errors[:, j] = np.where(use_req, err, eps)
        return rates, errors

    def report(self, **options: Any) -> Any:
        """Return the :class:`~latentcheck.model.report.Report` of the profiled rows.

        `options` are those of :meth:`Stream.report`. Exact as :func:`latentcheck.analyze`
        on the concatenated shards: moments, covariance, KL, prior outlier rates,
        extremes, normalisation constants, the seeded sample and every test and quantile
        on it. Sketch estimates over all rows (within :func:`rank_error`): the k-σ outlier
        rates about the mean (``dims[*].outlier_rate``, ``summary.outlier_rate``,
        ``summary.outlier_ratio``). From the seeded sample, as a Stream: Mahalanobis rates,
        Mardia's kurtosis and the verdict's outlier finding; no spatial statistics.
        ``settings.profile`` says all this.
        """
        rep = self.stream.report(**options)
        dims = rep.dims
        levels = list(rep.settings.sigma_levels)
        rates, errors = self.outside_rates(dims.mean, dims.std, levels)
        ok = ~np.asarray(dims.degenerate, dtype=bool)
        rates[:, ~ok] = np.asarray(dims.outlier_rate)[:, ~ok]
        pooled = (
            rates[:, ok].sum(axis=1) / int(ok.sum()) if ok.any() else np.full(len(levels), np.nan)
        )
        sm = rep.summary
        keys = list(sm.outlier_rate)
        expected = np.array([sm.expected_outlier_rate[k] for k in keys])
        summary = dataclasses.replace(
            sm,
            outlier_rate=dict(zip(keys, pooled.tolist(), strict=True)),
            outlier_ratio=dict(zip(keys, (pooled / expected).tolist(), strict=True)),
        )
        eps = rank_error(self.sketch_k)
        info = {
            "format_version": FORMAT_VERSION,
            "profiles": len(self.rows),
            "rows": [list(r) for r in self.rows],
            "sketch": "KLL (Apache DataSketches kll_doubles_sketch)",
            "sketch_k": self.sketch_k,
            "rank_error": rank_error(self.sketch_k, two_sided=False),
            "two_sided_rank_error": rank_error(self.sketch_k),
            "tail_sketch": "REQ (Apache DataSketches req_floats_sketch, low and high ranks)",
            "tail_sketch_k": int(self.low[0].k),
            "outlier_rate_error": dict(
                zip(keys, np.nanmax(errors, axis=1, initial=0.0).tolist(), strict=True)
            ),
            "exact_in_sketch": not any(
                s.is_estimation_mode() for s in [*self.sketches, *self.low, *self.high]
            ),
            "sketch_estimates": [
                "dims.outlier_rate",
                "summary.outlier_rate",
                "summary.outlier_ratio",
            ],
            "note": (
                "merged from saved profiles: the k-sigma outlier rates about the mean are "
                "sketch estimates over all rows (KLL or REQ, whichever states the smaller "
                "error; at most outlier_rate_error per k); the verdict's outlier finding, "
                "Mahalanobis rates and Mardia's kurtosis come from the seeded sample"
            ),
        }
        settings = dataclasses.replace(rep.settings, profile=info)
        single = MODE_NOTE.split("{", 1)[0]
        notes = tuple(n for n in rep.input.notes if not n.startswith(single))
        inp = dataclasses.replace(
            rep.input,
            sources=tuple(self.sources),
            notes=(*notes, PROFILE_NOTE.format(p=len(self.rows), k=self.sketch_k, e=100 * eps)),
        )
        return dataclasses.replace(
            rep,
            input=inp,
            dims=dataclasses.replace(dims, outlier_rate=rates),
            summary=summary,
            settings=settings,
        )

    # -- files --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Return the ``.lcprof`` bytes (see :mod:`latentcheck.io.profile_format`)."""
        return encode(
            self.stream.state(), self.sketches, self.rows, self.sources, self.low, self.high
        )

    def save(self, path: str) -> None:
        """Write the profile to `path` atomically (``'-'`` for stdout)."""
        from .io.output import write_bytes

        write_bytes(self.to_bytes(), path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "profile") -> Profile:
        """Read a profile from ``.lcprof`` bytes; FormatError names what is wrong."""
        parts = decode(data, name)
        return cls(parts.stream, parts.sketches, parts.rows, parts.sources, parts.low, parts.high)

    @classmethod
    def load(cls, path: Any) -> Profile:
        """Read a ``.lcprof`` file (never unpickles)."""
        shown = str(path)
        v.check_regular_file(path)  # a FIFO or device would block or never end
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise FormatError(f"Cannot read {shown}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, shown)


def _cdf(sketch: Any, points: NDArray[np.float64], inclusive: bool) -> NDArray[np.float64]:
    """Return the sketch's CDF at `points` (any order; the library wants them increasing)."""
    uniq, back = np.unique(points, return_inverse=True)
    cdf = np.asarray(sketch.get_cdf(uniq.tolist(), inclusive), dtype=np.float64)[:-1]
    out: NDArray[np.float64] = cdf[back]
    return out


def _req_error(sketch: Any, ranks: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return REQ's own 3-standard-deviation bound on each of `ranks` (0 where exact)."""
    out = [
        max(r - sketch.get_rank_lower_bound(r, 3), sketch.get_rank_upper_bound(r, 3) - r, 0.0)
        for r in ranks.tolist()
    ]
    return np.asarray(out, dtype=np.float64)


def _check_disjoint(parts: Sequence[Profile]) -> None:
    """Raise InputError if two profiles hold a global row in common."""
    ranges = sorted(r for p in parts for r in p.rows)
    for (a0, a1), (b0, b1) in itertools.pairwise(ranges):
        if b0 < a1:
            raise InputError(
                f"Profiles hold overlapping rows [{a0}, {a1}) and [{b0}, {b1}): profile each "
                "shard with its global row offset (--row-offset N, N = rows before it), or "
                "profile the files together in one call"
            )


def is_profile_input(latents: Any) -> bool:
    """Return True if `latents` is a Profile, an ``.lcprof`` path, or a list of them."""
    items = list(latents) if isinstance(latents, (list, tuple)) else [latents]
    flags = [
        isinstance(x, Profile)
        or (isinstance(x, (str, os.PathLike)) and os.fspath(x).endswith(PROFILE_SUFFIX))
        for x in items
    ]
    if any(flags) and not all(flags):
        raise InputError(
            "Profiles (.lcprof) and latent files cannot be mixed in one input; profile the "
            "latent files too (latentcheck profile) and merge the profiles"
        )
    return bool(items) and all(flags)


def load_profiles(latents: Any) -> Profile:
    """Return the merge of the profiles (objects or ``.lcprof`` paths) in `latents`."""
    from .io.latents import expand_paths

    items = list(latents) if isinstance(latents, (list, tuple)) else [latents]
    parts: list[Profile] = []
    for x in items:  # paths may be globs ("shards/*.lcprof"), as for report
        parts.extend([x] if isinstance(x, Profile) else map(Profile.load, expand_paths([x])))
    return parts[0].merge(*parts[1:])


#: analyze's options that finish a report (the rest are fixed when profiling)
_FINISH = (
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
#: analyze's options a profile fixes, with the Stream attribute that holds them
_FIXED = {
    "seed": "seed",
    "test_samples": "test_samples",
    "nan": "nan",
    "max_joint_dims": "max_joint_dims",
    "channel_axis": "channel_axis",
    "flatten": "flatten",
    "sample_size": "sample_size",
    "sigma_levels": "levels",
}


def report_profiles(latents: Any, **options: Any) -> Any:
    """Return ``analyze``'s report of profiles: merged, then finished with `options`.

    Options a profile fixed when it was made (seed, test_samples, ...) may be left at
    their defaults or repeat the profile's value; posterior inputs are refused.
    """
    from .options import AnalysisOptions

    merged = load_profiles(latents)
    defaults = AnalysisOptions().as_dict()  # analyze's defaults, defined once
    for name in ("mu", "logvar", "std", "var"):
        if options.get(name) is not None:
            raise InputError(f"Profiles hold latents only; `{name}` cannot be given with them")
    stream = merged.stream
    for name, attr in _FIXED.items():
        value = options.get(name, defaults.get(name))
        if name == "sigma_levels" and value is not None:
            value = tuple(float(x) for x in value)
        if value != defaults.get(name) and value != getattr(stream, attr):
            raise InputError(
                f"The profiles were made with {name}={getattr(stream, attr)!r}, not {value!r}; "
                f"profile again with {name}={value!r}, or leave it out"
            )
    return merged.report(**{k: options[k] for k in _FINISH if k in options})


def analysis_of_profiles(latents: Any, **options: Any) -> Any:
    """Return an :class:`~latentcheck.analysis.api.Analysis` of profiles (for ``compare``).

    The report of :meth:`Profile.report` with the profiles' seeded sample, on which
    ``compare`` runs its two-sample tests. Only finishing `options` apply: the others
    (seed, test_samples, ...) were fixed when the profiles were made.
    """
    from .analysis.common import Analysis

    merged = load_profiles(latents)
    rep = merged.report(**{k: options[k] for k in _FINISH if k in options})
    return Analysis(rep, merged.stream.sample_reservoir())


@with_storage_options
def profile(
    latents: Any,
    *,
    key: str | None = OPTIONS["key"].default,
    channel_axis: int = OPTIONS["channel_axis"].default,
    flatten: bool = OPTIONS["flatten"].default,
    per_sample: bool | None = OPTIONS["per_sample"].default,
    seed: int | None = OPTIONS["seed"].default,
    test_samples: int = OPTIONS["test_samples"].default,
    sample_size: int | None = OPTIONS["sample_size"].default,
    nan: str = OPTIONS["nan"].default,
    sigma_levels: Sequence[float] | None = None,
    max_joint_dims: int = OPTIONS["max_joint_dims"].default,
    row_offset: int = 0,
    sketch_k: int = DEFAULT_SKETCH_K,
    chunk_rows: int | None = OPTIONS["chunk_rows"].default,
) -> Profile:
    """Profile latents (an array, a file, or files read as one data set) into a Profile.

    Parameters
    ----------
    latents : ndarray, str, Path, or a sequence of them
        As for :func:`latentcheck.analyze` (files given together are one data set, their
        row offsets counted automatically).
    key, channel_axis, flatten, per_sample, seed, test_samples, sample_size, nan, sigma_levels, \
    max_joint_dims :
        As for :func:`latentcheck.analyze`; profiles merge only with equal settings.
    row_offset : int, default=0
        Global row id of the first row (of the 2-D view): the rows of all shards before
        this one, so that the merged sample equals ``analyze``'s of the concatenation.
    sketch_k : int, default=2000
        KLL parameter: larger is more accurate (see :func:`rank_error`) and bigger
        (about 22 bytes × k per dimension).
    chunk_rows : int or None
        Rows per streamed block (default as ``analyze``).

    Returns
    -------
    Profile

    Raises
    ------
    InputError
        datasketches missing, bad parameters, unreadable latents.

    Examples
    --------
    >>> import numpy as np, latentcheck as lc
    >>> z = np.random.default_rng(0).standard_normal((3000, 4))
    >>> a = lc.profile(z[:1000], seed=0)
    >>> b = lc.profile(z[1000:], seed=0, row_offset=1000)
    >>> rep = lc.Profile.merge(b, a).report()
    >>> ref = lc.analyze(z, seed=0)
    >>> bool(np.allclose(rep.dims.kl_gauss, ref.dims.kl_gauss, rtol=1e-12))
    True
    """
    from .engine.scheduler import default_chunk_rows
    from .io.latents import iter_blocks, open_latents
    from .stream import Stream

    sketch_cls = kll()
    k = v.check_int(sketch_k, "sketch_k", minimum=8)
    if k > 65535:
        raise InputError(f"`sketch_k` must be at most 65535 (a KLL limit), got {k}")
    offset = v.check_int(row_offset, "row_offset", minimum=0)
    src = open_latents(
        latents, key=key, channel_axis=channel_axis, flatten=flatten, per_sample=per_sample
    )
    try:
        stream = Stream(
            channel_axis=channel_axis,
            flatten=flatten,
            seed=seed,
            test_samples=test_samples,
            sample_size=sample_size,
            nan=nan,
            sigma_levels=sigma_levels,
            max_joint_dims=max_joint_dims,
            row_offset=offset,
        )
        stream.start_source(src)
        d = src.n_dims
        sketches = [sketch_cls(k) for _ in range(d)]
        low = [req()(REQ_K, False) for _ in range(d)]
        high = [req()(REQ_K, True) for _ in range(d)]
        rows = chunk_rows if chunk_rows is not None else default_chunk_rows(d)
        per_item = src.rows_per_item
        for _, block in iter_blocks(src, v.check_int(rows, "chunk_rows", minimum=1)):
            stream.push_rows(block, block.shape[0] // per_item)
            finite = block if np.isfinite(block).all() else block[np.isfinite(block).all(axis=1)]
            cols = np.asarray(finite, dtype=np.float64)
            for j in range(d):
                sketches[j].update(np.ascontiguousarray(cols[:, j]))
                col32 = np.ascontiguousarray(cols[:, j], dtype=np.float32)
                low[j].update(col32)
                high[j].update(col32)
        labels = list(src.labels)
    finally:
        src.close()
    return Profile(stream, sketches, [(offset, offset + stream.n_rows)], labels, low, high)
