"""Posterior inputs: resolving mu / logvar (or std / var) / z, and streaming them.

The aggregate posterior the report analyses is ``z`` when given, else one seeded draw
``z = mu + sigma * eps`` per input. The draw is a pure function of the element's global
index and the seed (:mod:`latentcheck.io.noise`), so every pass, chunking, shard and
thread sees the same z. A second accumulator streams the posterior parameters themselves
for the rate, active units and the mixture estimate of the ELBO-surgery split, fed by the
draw's own reads when it can be (issue 22).

The draw itself (:class:`DrawSource`) lives in :mod:`latentcheck.io.draw`; its names are
importable from here too.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from ..engine.accumulators import Reservoir, key_threshold
from ..errors import FormatError, InputError
from ..model.posterior import PosteriorBlock
from .draw import POSTERIOR_PART, SPREAD_KINDS, DrawSource, PosteriorInputs, SpreadKind
from .latents import NPZ_ROLES, LatentSource, expand_paths, file_keys, open_latents
from .noise import standard_normal
from .registry import find_reader

if TYPE_CHECKING:
    from ..stats.posterior.mixture import MixtureDecomposition
    from ..stats.posterior.rate import PosteriorStats

__all__ = [
    "POSTERIOR_PART",
    "DrawSource",
    "PosteriorFeed",
    "PosteriorInputs",
    "PosteriorJob",
    "PosteriorPass",
    "resolve_inputs",
    "standard_normal",
]


class StackSource(LatentSource):
    """A LatentSource whose rows are [mu | spread] side by side (for the posterior pass)."""

    def __init__(self, post: PosteriorInputs) -> None:
        mu = post.mu
        super().__init__(
            members=mu.members,
            item_shape=mu.item_shape,
            channel_axis=mu.channel_axis,
            n_items=mu.n_items,
            rows_per_item=mu.rows_per_item,
            n_dims=2 * mu.n_dims,
            dtype=np.dtype(np.float64),
            name=mu.name,
        )
        self.post = post

    def read_items(self, start: int, stop: int) -> NDArray[Any]:
        """Return [mu | spread] rows of samples [start, stop)."""
        a = np.asarray(self.post.mu.read_items(start, stop), dtype=np.float64)
        b = np.asarray(self.post.spread.read_items(start, stop), dtype=np.float64)
        return np.concatenate([a, b], axis=1)


class PosteriorPass:
    """Streams posterior parameters: the rate accumulator and a seeded sample of rows.

    Its rows are ``[mu | spread]``; with `checked`, ``[mu | logvar]`` as a
    :class:`DrawSource` hands them out (float64, checked where they were read), which it
    takes as they are.
    """

    def __init__(
        self,
        d: int,
        kind: SpreadKind,
        labels: dict[str, str],
        *,
        seed: int,
        capacity: int,
        threshold: int | None,
        checked: bool = False,
    ) -> None:
        from ..stats.posterior.rate import PosteriorAccumulator

        self.d = d
        self.kind: SpreadKind = "logvar" if checked else kind
        self.labels = labels
        self.checked = checked
        self.acc = PosteriorAccumulator()
        self.sample = Reservoir(capacity, 2 * d, seed, np.float64, threshold=threshold)

    def push(self, block: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add [mu | spread] rows whose global row indices are `row_ids` (consecutive)."""
        from ..stats.posterior.params import as_logvar, check_mu

        d = self.d
        row_start = int(row_ids[0]) if row_ids.size else 0
        if self.checked:
            mu, lv, rows = block[:, :d], block[:, d:], block
        else:
            mu = check_mu(block[:, :d], name=self.labels.get("mu", "mu"), row_offset=row_start)
            lv = as_logvar(
                block[:, d:], self.kind, name=self.labels.get("spread"), row_offset=row_start
            )
            rows = np.concatenate([mu, lv], axis=1)
        self.acc.push(mu, lv, row_offset=row_start)
        self.sample.push(rows, row_ids)

    def finish(self) -> PosteriorPass:
        """Compact the sample; return self."""
        self.sample.finish()
        return self

    def merge(self, other: PosteriorPass) -> PosteriorPass:
        """Return a new pass holding the rows of both (neither changes)."""
        out = copy.copy(self)
        out.acc = self.acc.merge(other.acc)
        out.sample = self.sample.merge(other.sample)
        return out

    __add__ = merge

    def state(self) -> dict[str, Any]:
        """Return the state as a flat dict (see the Accumulator contract)."""
        out: dict[str, Any] = {
            "d": self.d,
            "spread_kind": str(self.kind),
            "checked": int(self.checked),
        }
        out.update({f"labels.{k}": v for k, v in self.labels.items()})
        out.update({f"acc.{k}": v for k, v in self.acc.state().items()})
        out.update({f"sample.{k}": v for k, v in self.sample.state().items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PosteriorPass:
        """Rebuild a pass from :meth:`state`."""
        from ..engine.protocol import sub_state
        from ..stats.posterior.rate import PosteriorAccumulator

        out = cls.__new__(cls)
        out.d = int(state["d"])
        out.kind = cast(SpreadKind, str(state["spread_kind"]))
        out.checked = bool(int(state.get("checked", 0)))
        out.labels = {k: str(v) for k, v in sub_state(state, "labels.").items()}
        out.acc = PosteriorAccumulator.from_state(sub_state(state, "acc."))
        out.sample = Reservoir.from_state(sub_state(state, "sample."))
        return out


def _keyed_paths(latents: Any) -> list[str] | None:
    """Return the paths (globs expanded) if `latents` names only files of named arrays.

    Files of named arrays are ``.npz``, ``.safetensors``, ``.h5``/``.hdf5``, ``.zarr`` and
    ``.pt``/``.pth``; None otherwise, and for missing files (opening them reports those).
    """
    items = [latents] if isinstance(latents, (str, os.PathLike)) else latents
    if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)) or not items:
        return None
    if not all(isinstance(p, (str, os.PathLike)) for p in items):
        return None
    try:
        paths = expand_paths(items)
    except FormatError:
        return None
    if all((r := find_reader(p)) is not None and r.keyed for p in paths):
        return [str(p) for p in paths]  # remote paths as their URLs
    return None


def _role_key(keys: list[str], role: str) -> str | None:
    """Return the first key of `keys` named like `role`, or None."""
    for name in NPZ_ROLES[role]:
        if name in keys:
            return name
    return None


def resolve_inputs(
    latents: Any,
    *,
    mu: Any,
    logvar: Any,
    std: Any,
    var: Any,
    key: str | None,
    channel_axis: int,
    flatten: bool,
    per_sample: bool | None = None,
) -> tuple[LatentSource | None, PosteriorInputs | None]:
    """Return (z source or None, posterior inputs or None) for the given arguments.

    Posterior mode starts when `mu` and one of `logvar`/`std`/`var` are given, or when
    `latents` are files of named arrays (``.npz``, ``.safetensors``, ``.h5``, ``.zarr``,
    ``.pt``; no `key` given) that hold both a mean and a spread array by name
    (:data:`~latentcheck.io.latents.NPZ_ROLES`); then z is read from the same files if they
    hold one.

    Raises
    ------
    InputError
        Posterior parameters given incompletely, twice, or with disagreeing shapes.
    """
    open_view = functools.partial(
        open_latents, channel_axis=channel_axis, flatten=flatten, per_sample=per_sample
    )
    candidates: tuple[tuple[SpreadKind, Any], ...] = (
        ("logvar", logvar),
        ("std", std),
        ("var", var),
    )
    spreads = {k: v for k, v in candidates if v is not None}
    if mu is None and not spreads:
        paths = _keyed_paths(latents) if key is None and latents is not None else None
        if paths is None:
            return None, None
        keys = file_keys(paths[0])
        mu_key = _role_key(keys, "mu")
        spread = [(k, name) for k in SPREAD_KINDS if (name := _role_key(keys, k)) is not None]
        if mu_key is None or not spread:
            return None, None
        kind, spread_key = spread[0]
        z_key = _role_key(keys, "z")
        post = PosteriorInputs(
            mu=open_view(paths, key=mu_key, role="mu"),
            spread=open_view(paths, key=spread_key, role=kind),
            kind=kind,
            z=open_view(paths, key=z_key) if z_key else None,
            labels={"mu": mu_key, "spread": spread_key},
        )
        _check_aligned(post)
        return post.z, post
    if mu is None:
        given = ", ".join(f"`{k}`" for k in spreads)
        raise InputError(
            f"Only {given} given: the posterior also needs the means; pass `mu` (--mu)"
        )
    if not spreads:
        raise InputError(
            "`mu` given without a spread: pass one of `logvar`, `std` or `var` "
            "(--logvar, --std, --var)"
        )
    if len(spreads) > 1:
        raise InputError(
            f"Give one of `logvar`, `std`, `var`, not {len(spreads)} ({', '.join(spreads)})"
        )
    kind, spread_arg = next(iter(spreads.items()))
    post = PosteriorInputs(
        mu=open_view(mu, key=key, role="mu", name="mu"),
        spread=open_view(spread_arg, key=key, role=kind, name=kind),
        kind=kind,
        z=open_view(latents, key=key) if latents is not None else None,
        labels={"mu": "mu", "spread": kind},
    )
    _check_aligned(post)
    return post.z, post


def _check_aligned(post: PosteriorInputs) -> None:
    """Raise InputError unless mu, the spread and z have the same shape and shards."""
    parts = [("mu", post.mu), (post.kind, post.spread)]
    if post.z is not None:
        parts.append(("z", post.z))
    first_name, first = parts[0]
    for name, src in parts[1:]:
        if src.shape != first.shape:
            raise InputError(
                f"`{first_name}` has shape {first.shape} but `{name}` has shape {src.shape}; "
                "posterior parameters and samples must have one row per input"
            )


def aggregate_description(post: PosteriorInputs, seed: int) -> str:
    """Return, in words, where the analysed z comes from."""
    if post.z is not None:
        return f"z as given ({', '.join(post.z.labels)})"
    return (
        f"one seeded draw z = mu + sigma * eps per input (seed {seed}; float32 ziggurat eps "
        "from SFC64 streams per block of 65536 values, the same in every pass)"
    )


@dataclass(frozen=True)
class PosteriorFeed:
    """Makes the extras through which pass 1 feeds the posterior (pickles, for workers).

    Called, it returns ``{"posterior": PosteriorPass}`` taking the ``[mu | logvar]`` part
    of each :class:`DrawSource` read (see :class:`~latentcheck.engine.plan.FirstPass`).
    """

    d: int
    labels: dict[str, str]
    seed: int
    capacity: int
    threshold: int | None

    def __call__(self) -> dict[str, PosteriorPass]:
        """Return a fresh accumulator of the posterior parameters under its part's name."""
        acc = PosteriorPass(
            self.d,
            "logvar",
            self.labels,
            seed=self.seed,
            capacity=self.capacity,
            threshold=self.threshold,
            checked=True,
        )
        return {POSTERIOR_PART: acc}

    def state_bytes(self, n_rows: int) -> tuple[int, int]:
        """Return (bytes of one segment's rate state, bytes of the whole pass's sample)."""
        from ..stats.posterior.rate import PosteriorAccumulator

        acc = PosteriorAccumulator()
        acc.push(np.zeros((0, self.d)), np.zeros((0, self.d)))  # sizes its histogram
        rate = sum(np.asarray(v).nbytes for v in acc.state().values())
        rows = min(n_rows, self.capacity + 8 * math.isqrt(self.capacity) + 1088)
        return rate, rows * (16 * self.d + 16)


@dataclass(frozen=True)
class PosteriorJob:
    """The posterior part of an analysis: thresholds and the mixture sample size."""

    post: PosteriorInputs
    active_threshold: float = 0.01
    collapse_threshold: float = 0.01
    mixture_samples: int = 2048

    def plan(self, chunk_rows: int) -> list[list[tuple[int, int]]]:
        """Return the segments of chunks that the posterior parameters stream in.

        Their merge order fixes the rate's last bits: pass 1 may feed the rate only
        when it streams these same segments (see :meth:`feed`).
        """
        from ..engine.scheduler import segments_of
        from .latents import plan_blocks

        return segments_of(plan_blocks([self.post.mu, self.post.spread], chunk_rows))

    def feed(
        self,
        source: LatentSource,
        segments: list[list[tuple[int, int]]],
        *,
        seed: int,
        chunk_rows: int,
    ) -> PosteriorFeed | None:
        """Return the extras through which pass 1 can feed the rate, or None.

        Pass 1 can when it streams the draw of these parameters (not a given z) in the
        segments of the posterior's own pass (:meth:`plan`), so that the rate is merged
        in the same order to the last bit. Otherwise :meth:`run` streams them itself.
        """
        if not (
            isinstance(source, DrawSource) and source.post is self.post and source.seed == seed
        ):
            return None
        if segments != self.plan(chunk_rows):
            return None
        n = source.n_rows
        cap = self.mixture_samples
        return PosteriorFeed(
            self.post.mu.n_dims, dict(self.post.labels), seed, cap, key_threshold(n, cap)
        )

    def start(
        self,
        *,
        seed: int,
        threads: int,
        chunk_rows: int,
        collect: Callable[..., Any],
        fed: PosteriorPass | None = None,
    ) -> Callable[[], PosteriorBlock]:
        """Start the report's ``posterior`` block; return the function that finishes it.

        When pass 1 fed the parameters' sample (`fed`, see :meth:`feed`) and more than one
        thread may run, the mixture estimate starts at once on a thread of its own (numpy
        releases the GIL in its loops), so that it overlaps pass 2 and the statistics of
        the sample instead of running after them; its figures are the same. Otherwise
        :meth:`run` does everything when the returned function is called.
        """
        from ..stats.posterior.mixture import mixture_decomposition

        run = functools.partial(
            self.run, seed=seed, threads=threads, chunk_rows=chunk_rows, collect=collect, fed=fed
        )
        if fed is None or threads < 2 or not fed.sample.complete():
            return run
        d = self.post.mu.n_dims
        rows = fed.sample.finalize().rows
        if rows.shape[0] < 2:  # the estimate warns: in this thread, through `collect`
            return run
        pool = ThreadPoolExecutor(1, thread_name_prefix="latentcheck-mixture")
        mix = pool.submit(mixture_decomposition, rows[:, :d], rows[:, d:], seed=seed)
        pool.shutdown(wait=False)  # its thread ends with the task

        def finish() -> PosteriorBlock:
            estimate = mix.result()
            # joined, not left to end on its own: a live thread would keep the next
            # analysis in this process from forking worker processes (other_threads)
            pool.shutdown(wait=True)
            return self.run(
                seed=seed,
                threads=threads,
                chunk_rows=chunk_rows,
                collect=collect,
                fed=fed,
                mixture=estimate,
            )

        return finish

    def parameters(
        self,
        *,
        seed: int,
        threads: int,
        chunk_rows: int,
        progress: Callable[[int], None] | None = None,
        fed: PosteriorPass | None = None,
    ) -> PosteriorPass:
        """Return `fed`, or the posterior parameters streamed in a pass of their own."""
        from ..engine.scheduler import run_pass
        from .latents import plan_blocks

        post = self.post
        d = post.mu.n_dims
        stack = StackSource(post)
        ranges = plan_blocks([post.mu, post.spread], chunk_rows)
        cap = self.mixture_samples
        thr = key_threshold(stack.n_rows, cap)
        acc: PosteriorPass = (
            fed
            if fed is not None
            else run_pass(
                stack,
                ranges,
                lambda: PosteriorPass(
                    d, post.kind, post.labels, seed=seed, capacity=cap, threshold=thr
                ),
                threads=threads,
                progress=progress,
            )
        )
        if not acc.sample.complete():  # p < 1e-15: the prefilter was too tight
            acc = run_pass(
                stack,
                ranges,
                lambda: PosteriorPass(
                    d, post.kind, post.labels, seed=seed, capacity=cap, threshold=None
                ),
                threads=threads,
            )
        return acc

    def run(
        self,
        *,
        seed: int,
        threads: int,
        chunk_rows: int,
        collect: Callable[..., Any],
        progress: Callable[[int], None] | None = None,
        fed: PosteriorPass | None = None,
        mixture: MixtureDecomposition | None = None,
    ) -> PosteriorBlock:
        """Return the report's ``posterior`` block.

        `fed` is the accumulator that pass 1 fed (see :meth:`feed`); without it, the
        posterior parameters are streamed here, a pass of their own. `mixture` is the
        mixture estimate on the sample of `fed` if already made (see :meth:`start`).
        """
        from ..stats.posterior.mixture import mixture_decomposition
        from ..stats.posterior.rate import finalize_posterior

        acc = self.parameters(
            seed=seed, threads=threads, chunk_rows=chunk_rows, progress=progress, fed=fed
        )
        stats = collect(
            finalize_posterior,
            acc.acc,
            active_threshold=self.active_threshold,
            collapse_threshold=self.collapse_threshold,
        )
        if mixture is None:
            d = self.post.mu.n_dims
            rows = acc.sample.finalize().rows
            mixture = collect(mixture_decomposition, rows[:, :d], rows[:, d:], seed=seed)
        return self.block(stats, mixture)

    def block(self, stats: PosteriorStats, mix: MixtureDecomposition) -> PosteriorBlock:
        """Return the ``posterior`` block of the rate's statistics and the mixture estimate."""
        post = self.post
        levels = [f"{q:g}" for q in stats.std_quantile_levels]
        return PosteriorBlock(
            spread_input=post.kind,
            n_samples=stats.n_samples,
            kl_per_dim=stats.kl_per_dim,
            kl_mean_part=stats.kl_mean_part,
            kl_variance_part=stats.kl_variance_part,
            rate_nats=stats.rate_nats,
            rate_bits=stats.rate_bits,
            rows_per_sample=post.mu.rows_per_item,
            rate_per_sample_nats=stats.rate_nats * post.mu.rows_per_item,
            rate_mean_part_nats=stats.rate_mean_part_nats,
            rate_variance_part_nats=stats.rate_variance_part_nats,
            rate_share=stats.rate_share,
            mu_mean=stats.mu_mean,
            mu_var=stats.mu_var,
            mean_posterior_var=stats.mean_posterior_var,
            mean_posterior_std=stats.mean_posterior_std,
            snr=stats.snr,
            posterior_std_quantiles={
                q: stats.posterior_std_quantiles[:, i] for i, q in enumerate(levels)
            },
            posterior_std_quantiles_all=dict(
                zip(levels, stats.posterior_std_quantiles_all.tolist(), strict=True)
            ),
            logvar_min=stats.logvar_min,
            logvar_max=stats.logvar_max,
            share_at_min=stats.share_at_min,
            active_threshold=stats.active_threshold,
            active_units=stats.active_units,
            active_dims=tuple(int(i) for i in stats.active_dims),
            collapse_threshold=stats.collapse_threshold,
            collapsed_dims=tuple(int(i) for i in stats.collapsed_dims),
            mutual_information=mix.mutual_information,
            mutual_information_se=mix.mutual_information_se,
            kl_aggregate=mix.kl_aggregate,
            kl_aggregate_se=mix.kl_aggregate_se,
            total_correlation=mix.total_correlation,
            total_correlation_se=mix.total_correlation_se,
            dimwise_kl=mix.dimwise_kl,
            dimwise_kl_se=mix.dimwise_kl_se,
            dimwise_kl_per_dim=mix.dimwise_kl_per_dim,
            mixture_rate_nats=mix.rate_nats,
            # bias regime of the mixture estimate (issue 15, item 11)
            mutual_information_upper=mix.mutual_information_upper,
            mutual_information_upper_se=mix.mutual_information_upper_se,
            mutual_information_ceiling=mix.mutual_information_ceiling,
            mutual_information_regime=mix.mutual_information_regime,
            mixture_bounds={k: list(v) for k, v in mix.bounds.items()},
            estimator=mix.estimator,
        )
