"""Saved, mergeable profiles: ``latentcheck profile`` and ``.lcprof`` files (issue 19).

A :class:`Profile` is a :class:`~latentcheck.stream.Stream`'s pass-1 state (moments,
co-moments, non-finite counts, the seeded bottom-k sample keyed by a hash of the *global*
row id, exact prior exceedance counts and extremes) plus, per dimension, one t-digest
quantile sketch (Apache DataSketches' ``tdigest_double``, [1]_, [2]_). Profiles of shards
of one data set merge, in any order and grouping, into the profile of the whole: every
figure of the pass-1 state and every test on the seeded sample is then exactly what
:func:`latentcheck.analyze` reports on the concatenated shards (the shards must carry their
global row offsets). Figures that need the *final* mean and std over all rows — the k-σ
outlier rates about the mean — are read off the merged sketches' CDF at mean ± k·std.

Determinism. A t-digest merges by sorting (stable sort, no random choice), so the same
values in the same order and blocks (``chunk_rows``) give the same sketch, byte for byte,
in any process; profiles are merged in the order of their first global row, so a set of
profiles gives the same report whatever order it is listed in. (DataSketches' KLL and REQ
sketches, used before, compact with random bits drawn from an unseeded generator: their
figures changed from run to run.)
Grouping the merges differently (``(a + b) + c`` against ``a + (b + c)``) changes the
sketch figures, within their error; the exact figures stay exact.

Error. The t-digest has *no* worst-case error bound: Cormode et al. [3]_ build inputs on
which its rank error is arbitrarily large. What it guarantees by construction is the size
of its centroids: with DataSketches' scale function K_2 [1]_ a centroid at rank q holds at
most a fraction q(1 − q)·z/δ of the n values, z = 4 ln(n/δ) + 24, δ the compression
(twice ``k`` inside the library). Where centroids do not overlap, a rank read between two
of them is off by at most about one centroid. The report states, per k-σ level, that
*resolution*, (r_lo(1 − r_lo) + r_hi(1 − r_hi))·z/k + 2/n for the two tails' masses r_lo,
r_hi (δ = k: a factor 2 of margin), as ``settings.profile.outlier_rate_error``, and, as
``measured_outlier_rate_error``, the sketch's actual error on these data at the prior
thresholds ±k, where the profile holds exact counts. Measured against exact numpy figures
(``tests/test_profiles.py``; N(0, 1), Student-t(3), a bimodal mixture, Poisson and rounded
values, spatially correlated conv channels; 1, 4 and 16 shards merged in shuffled order;
k = 1000, 2·10⁶ rows): the 2σ and 3σ rates of continuous data within 0.1 % of the rate
(relative), 4σ within 0.6 % (under one value), of tied values within 2.5 %, never above
0.46 of the stated resolution.

File format: see :mod:`latentcheck.io.profile_format`.

References
----------
.. [1] Dunning and Ertl, "Computing extremely accurate quantiles using t-digests",
       arXiv:1902.04023 (2019).
.. [2] Apache DataSketches, "t-digest", https://datasketches.apache.org/docs/tdigest/tdigest.html
.. [3] Cormode, Mishra, Ross and Veselý, "Theory meets practice at the median: a worst case
       comparison of relative error quantile algorithms", KDD 2021,
       doi:10.1145/3447548.3467152.
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
from .io.profile_format import FORMAT_VERSION, decode, encode, read_header
from .io.remote import with_storage_options
from .io.sketches import (
    resolution,
    settle,
    sketch_cdf,
    sketch_quantiles,
    tdigest,
    update_sketches,
)
from .options import ANALYSIS_OPTIONS as OPTIONS

__all__ = [
    "DEFAULT_SKETCH_K",
    "FORMAT_VERSION",
    "PROFILE_SUFFIX",
    "Profile",
    "is_profile_input",
    "profile",
    "resolution",
]

PROFILE_SUFFIX = ".lcprof"
#: t-digest compression k: 20 KB per dimension; see the module docstring for its accuracy.
DEFAULT_SKETCH_K = 1000
#: t-digest limits of k (DataSketches: at least 10, a 16-bit integer)
SKETCH_K_RANGE = (10, 65535)
PROFILE_NOTE = (
    "merged from {p} saved profile(s): moments, covariance, KL, prior outlier rates and "
    "extremes are exact, the seeded sample (quantiles; tests for 2-D latents) is analyze's; "
    "outlier rates about the mean are t-digest estimates over all rows (k={k}; stated "
    "resolution at most {e:.3g}%, not a worst-case bound: settings.profile); "
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
        One ``datasketches.tdigest_double`` per dimension, over the finite rows.
    rows : list of (int, int)
        The global row ranges ``[start, stop)`` held.
    sources : list of str
        Names of the profiled inputs.
    """

    def __init__(
        self, stream: Any, sketches: list[Any], rows: list[tuple[int, int]], sources: list[str]
    ) -> None:
        self.stream = stream
        self.sketches = sketches
        self.rows = sorted(rows)
        self.sources = sources

    def __repr__(self) -> str:
        return (
            f"<Profile: {self.stream.n_rows} rows x {self.stream.n_dims} dims in "
            f"{len(self.rows)} range(s), t-digest k={self.sketch_k}>"
        )

    @property
    def sketch_k(self) -> int:
        """The t-digest parameter k of the sketches."""
        return int(self.sketches[0].k)

    # -- merging ------------------------------------------------------------------------
    def merge(self, *others: Profile) -> Profile:
        """Return the merge of this profile and `others` (none of them is changed).

        ``Profile.merge(a, b, c)`` and ``a.merge(b, c)`` are the same. Inputs are merged
        one after the other in the order of their first global row, so a flat list gives
        the same sketches, to the byte, whatever its order.

        Raises
        ------
        InputError
            Profiles whose row ranges overlap (shards profiled without their
            ``row_offset``), or of different widths, dtypes or settings.
        """
        parts = [self, *others]
        for p in parts:
            if not isinstance(p, Profile):
                raise InputError(f"Can only merge Profiles, got a {type(p).__name__}")
        _check_disjoint(parts)
        parts.sort(key=lambda p: p.rows[0])
        merged = parts[0].copy()
        for p in parts[1:]:
            merged.absorb(p)
        return merged

    def copy(self) -> Profile:
        """Return an independent copy (stream state and sketches)."""
        from .stream import Stream

        cls = tdigest()
        return Profile(
            Stream.from_state(self.stream.state()),
            [cls.deserialize(s.serialize()) for s in self.sketches],
            list(self.rows),
            list(self.sources),
        )

    def absorb(self, other: Profile) -> None:
        """Merge `other` into this profile in place (`other` is unchanged)."""
        _check_disjoint([self, other])
        if other.sketch_k != self.sketch_k:
            raise InputError(
                "Cannot merge profiles with different sketch sizes k: "
                f"{sorted({self.sketch_k, other.sketch_k})}"
            )
        self.stream = self.stream.merge(other.stream, rows_disjoint=True)
        for mine, theirs in zip(self.sketches, other.sketches, strict=True):
            mine.merge(theirs)
        settle(self.sketches)
        self.rows = sorted([*self.rows, *other.rows])
        self.sources = [*self.sources, *other.sources]

    # -- figures ------------------------------------------------------------------------
    def quantiles(self, levels: Sequence[float]) -> NDArray[np.float64]:
        """Return sketch quantiles of shape (len(levels), n_dims) over all finite rows.

        The values where the sketch's CDF reaches each level, found by bisection on
        :meth:`cdf` (DataSketches 5.2's own ``get_quantile`` interpolates with swapped
        weights and is not monotone; its ``get_rank`` is).
        """
        return np.stack([sketch_quantiles(s, levels) for s in self.sketches], axis=1)

    def cdf(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the sketch CDF at `points` of shape (n, n_dims), column j in dimension j."""
        pts = np.asarray(points, dtype=np.float64)
        out = np.full(pts.shape, np.nan)
        for j, s in enumerate(self.sketches):
            if not s.is_empty():
                out[:, j] = sketch_cdf(s, pts[:, j])
        return out

    def outside_rates(
        self, mean: NDArray[np.float64], std: NDArray[np.float64], levels: Sequence[float]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return sketch estimates of P(|z − mean| > k·std) and their stated resolution.

        Both of shape (len(levels), n_dims): the lower tail's rank at mean − k·std plus
        one minus the rank at mean + k·std, and :func:`resolution` of those two masses.
        """
        ks = np.asarray(levels, dtype=np.float64)[:, None]
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        ok = std > 0
        lo = np.where(ok, mean - ks * std, np.nan)
        hi = np.where(ok, mean + ks * std, np.nan)
        r_lo, r_hi = self.cdf(lo), 1.0 - self.cdf(hi)
        n = int(self.sketches[0].get_total_weight()) if self.sketches else 0
        return r_lo + r_hi, resolution(r_lo, r_hi, n, self.sketch_k)

    def prior_check(self) -> NDArray[np.float64]:
        """Return |sketch − exact| of P(|z| > k), shape (n_levels, n_dims).

        The profile holds exact counts beyond the prior thresholds ±k (the prior outlier
        rates): the sketch's error there is measured, on these data.
        """
        prior = self.stream.state()
        n = float(prior["moments.n"])
        levels = np.asarray(prior["config.levels"], dtype=np.float64)[:, None]
        d = len(self.sketches)
        exact = (prior["prior.upper"] + prior["prior.lower"]) / max(n, 1.0)
        est = (
            self.cdf(np.broadcast_to(-levels, (levels.size, d)))
            + 1.0
            - self.cdf(np.broadcast_to(levels, (levels.size, d)))
        )
        out: NDArray[np.float64] = np.abs(est - exact)
        return out

    def report(self, **options: Any) -> Any:
        """Return the :class:`~latentcheck.model.report.Report` of the profiled rows.

        `options` are those of :meth:`Stream.report`. Exact as :func:`latentcheck.analyze`
        on the concatenated shards: moments, covariance, KL, prior outlier rates,
        extremes, normalisation constants, the seeded sample and every test and quantile
        on it. t-digest estimates over all rows (within the resolution it states, not a
        worst-case bound): the k-σ outlier rates about the mean (``dims[*].outlier_rate``,
        ``summary.outlier_rate``, ``summary.outlier_ratio``). From the seeded sample, as a
        Stream: Mahalanobis rates, Mardia's kurtosis and the verdict's outlier finding; no
        spatial statistics. ``settings.profile`` says all this.
        """
        rep = self.stream.report(**options)
        dims = rep.dims
        levels = list(rep.settings.sigma_levels)
        rates, errors = self.outside_rates(dims.mean, dims.std, levels)
        ok = ~np.asarray(dims.degenerate, dtype=bool)
        rates[:, ~ok] = np.asarray(dims.outlier_rate)[:, ~ok]
        errors[:, ~ok] = np.nan
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
        stated = np.nanmax(np.where(np.isnan(errors), -np.inf, errors), axis=1, initial=0.0)
        settings = dataclasses.replace(rep.settings, profile=self._info(keys, stated))
        single = MODE_NOTE.split("{", 1)[0]
        notes = tuple(n for n in rep.input.notes if not n.startswith(single))
        note = PROFILE_NOTE.format(p=len(self.rows), k=self.sketch_k, e=100 * max(stated))
        inp = dataclasses.replace(rep.input, sources=tuple(self.sources), notes=(*notes, note))
        return dataclasses.replace(
            rep,
            input=inp,
            dims=dataclasses.replace(dims, outlier_rate=rates),
            summary=summary,
            settings=settings,
        )

    def _info(self, keys: list[str], stated: NDArray[np.float64]) -> dict[str, Any]:
        """Return ``settings.profile``: what was merged, the sketch, its stated errors."""
        measured = self.prior_check()
        measured_max = np.nanmax(np.where(np.isnan(measured), -np.inf, measured), axis=1)
        return {
            "format_version": FORMAT_VERSION,
            "profiles": len(self.rows),
            "rows": [list(r) for r in self.rows],
            "sketch": "t-digest (Apache DataSketches tdigest_double)",
            "sketch_k": self.sketch_k,
            "outlier_rate_error": dict(zip(keys, stated.tolist(), strict=True)),
            "measured_outlier_rate_error": dict(
                zip(keys, np.maximum(measured_max, 0.0).tolist(), strict=True)
            ),
            "sketch_estimates": [
                "dims.outlier_rate",
                "summary.outlier_rate",
                "summary.outlier_ratio",
            ],
            "note": (
                "merged from saved profiles: the k-sigma outlier rates about the mean are "
                "t-digest estimates over all rows; outlier_rate_error is, per k, the "
                "largest resolution the sketch states (its centroid size there), not a "
                "worst-case bound, which t-digests do not have; "
                "measured_outlier_rate_error is the sketch's actual largest error on these "
                "data at the prior thresholds +-k, where exact counts are held; the "
                "verdict's outlier finding, Mahalanobis rates and Mardia's kurtosis come "
                "from the seeded sample"
            ),
        }

    # -- files --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Return the ``.lcprof`` bytes (see :mod:`latentcheck.io.profile_format`)."""
        return encode(self.stream.state(), self.sketches, self.rows, self.sources)

    def save(self, path: str) -> None:
        """Write the profile to `path` atomically (``'-'`` for stdout)."""
        from .io.output import write_bytes

        write_bytes(self.to_bytes(), path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "profile") -> Profile:
        """Read a profile from ``.lcprof`` bytes; FormatError names what is wrong."""
        parts = decode(data, name)
        return cls(parts.stream, parts.sketches, parts.rows, parts.sources)

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
    """Return the merge of the profiles (objects or ``.lcprof`` paths) in `latents`.

    The files' headers are read first, to put every input in the order of its first global
    row; then one profile at a time is read and merged into the result, so that memory
    holds the result and one profile, not all of them. The merge is :meth:`Profile.merge`'s
    (the same order), whatever order the inputs are given in.
    """
    from .io.latents import expand_paths

    items = list(latents) if isinstance(latents, (list, tuple)) else [latents]
    keyed: list[tuple[tuple[int, int], int, Any]] = []
    for x in items:  # paths may be globs ("shards/*.lcprof"), as for report
        for y in [x] if isinstance(x, Profile) else expand_paths([x]):
            first = y.rows[0] if isinstance(y, Profile) else _first_rows(y)
            keyed.append((first, len(keyed), y))
    keyed.sort(key=lambda t: t[:2])
    merged: Profile | None = None
    for _, _, y in keyed:
        part = y if isinstance(y, Profile) else Profile.load(y)
        if merged is None:
            merged = part.copy() if part is y else part
        else:
            merged.absorb(part)
    if merged is None:
        raise InputError("No profiles given")
    return merged


def _first_rows(path: Any) -> tuple[int, int]:
    """Return the first global row range a ``.lcprof`` file holds, from its header."""
    shown = str(path)
    v.check_regular_file(path)
    header = read_header(path, shown)
    try:
        return min((int(a), int(b)) for a, b in header["rows"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{shown} misses part of a profile ({type(exc).__name__}: {exc})"
        ) from None


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
    sketch_k : int, default=1000
        t-digest compression: larger is finer (see :func:`resolution`) and bigger (about
        20 bytes × k per dimension); from 10 to 65535.
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

    sketch_cls = tdigest()
    k = v.check_int(sketch_k, "sketch_k", minimum=SKETCH_K_RANGE[0])
    if k > SKETCH_K_RANGE[1]:
        raise InputError(f"`sketch_k` must be at most 65535 (a t-digest limit), got {k}")
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
        rows = chunk_rows if chunk_rows is not None else default_chunk_rows(d)
        per_item = src.rows_per_item
        for _, block in iter_blocks(src, v.check_int(rows, "chunk_rows", minimum=1)):
            stream.push_rows(block, block.shape[0] // per_item)
            update_sketches(sketches, block)
        labels = list(src.labels)
    finally:
        src.close()
    settle(sketches)
    return Profile(stream, sketches, [(offset, offset + stream.n_rows)], labels)
