"""``Stream``: the push API for training and evaluation loops (issue 18).

A :class:`Stream` takes batches of latents one at a time (numpy arrays, or torch tensors on
any device, moved to the CPU without importing torch here), keeps only bounded state — the
first-pass accumulators of :func:`latentcheck.analyze` (moments, co-moments, non-finite
counts, the seeded bottom-k sample of rows) plus the exact prior exceedance counts and
extremes — and finishes into the usual :class:`~latentcheck.model.report.Report` through the same
code as ``analyze``.

Single pass by nature: figures that need only pass 1 (moments, covariance, KL to N(0, 1),
prior outlier rates, extremes, normalisation constants, the seeded sample and every test on
it) equal ``analyze`` on the concatenated batches. Figures that ``analyze`` counts in a
second pass about the *final* mean and std (k-sigma outlier rates about the mean,
Mahalanobis rates, Mardia's kurtosis, spatial statistics) come from the seeded sample here;
the report says so (``settings.mode == "single-pass"`` and a note).

States of several ranks merge (:meth:`Stream.merge`); :meth:`Stream.state` and
:meth:`Stream.from_state` turn a stream into a dict of numpy arrays and back (no pickle),
and :func:`gather` does the ``torch.distributed`` exchange with them.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import validation as v
from .errors import InputError
from .options import ANALYSIS_OPTIONS as OPTIONS

__all__ = ["Stream", "gather", "to_numpy"]

State = dict[str, NDArray[Any]]


def to_numpy(batch: Any) -> NDArray[Any]:
    """Return `batch` as a numpy array, without importing torch.

    Objects with ``.detach()`` / ``.cpu()`` / ``.numpy()`` (torch tensors on any device,
    also with ``requires_grad``) are detached and copied to host memory; bfloat16 tensors,
    which numpy cannot hold, are widened to float32 first. Anything else goes through
    ``np.asarray`` (``__array__``).
    """
    if isinstance(batch, np.ndarray):
        return batch
    if hasattr(batch, "detach") and hasattr(batch, "cpu"):
        t = batch.detach()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        t = t.cpu()
        if hasattr(t, "numpy"):
            return np.asarray(t.numpy())
        batch = t
    try:
        return np.asarray(batch)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"Cannot read a batch from a {type(batch).__name__} ({exc}); pass a numpy "
            "array or a tensor"
        ) from None


class Stream:
    """Statistics of latents pushed batch by batch, finished into a :class:`Report`.

    Parameters
    ----------
    channel_axis, flatten, seed, test_samples, sample_size, alpha, nan, sigma_levels,
    max_joint_dims, ... :
        As for :func:`latentcheck.analyze`; the remaining keyword arguments of ``analyze``
        that only shape the finishing step (``top_pairs``, ``joint_samples``,
        ``mcd_samples``, ``assume_scale`` ...) go to :meth:`report`.
    rank, world_size : int, default 0 and 1
        For data-parallel ranks: the i-th sample this stream sees is global sample
        ``i * world_size + rank`` (the order of ``DistributedSampler(shuffle=False)``).
        The seeded sample hashes global row ids, so merging the ranks' streams gives, in
        any order or grouping, the sample ``analyze`` draws from the rows in that
        interleaved order.
    row_offset : int, default 0
        Global row id of this stream's first row (for shards of one data set read by
        separate streams, as ``latentcheck profile --row-offset`` does); only with
        ``world_size=1``.

    Examples
    --------
    >>> import numpy as np, latentcheck as lc
    >>> rng = np.random.default_rng(0)
    >>> s = lc.Stream(seed=0)
    >>> for _ in range(4):
    ...     s.update(rng.standard_normal((500, 4)))
    >>> rep = s.report()
    >>> rep.input.n_samples, rep.settings.mode
    (2000, 'single-pass')
    """

    def __init__(
        self,
        *,
        channel_axis: int = OPTIONS["channel_axis"].default,
        flatten: bool = OPTIONS["flatten"].default,
        seed: int | None = OPTIONS["seed"].default,
        test_samples: int = OPTIONS["test_samples"].default,
        sample_size: int | None = OPTIONS["sample_size"].default,
        nan: str = OPTIONS["nan"].default,
        sigma_levels: Sequence[float] | None = None,
        max_joint_dims: int = OPTIONS["max_joint_dims"].default,
        rank: int = 0,
        world_size: int = 1,
        row_offset: int = 0,
    ) -> None:
        # defaults and checks are analyze's (latentcheck.options); a stream draws its seed
        # now, as its sample's keys depend on it from the first batch
        self.channel_axis = int(channel_axis)
        self.flatten = bool(flatten)
        self.seed = v.check_seed(seed)
        self.test_samples = OPTIONS["test_samples"].check(test_samples)
        self._sample_size = sample_size
        self.nan = OPTIONS["nan"].check(nan)
        self.levels = OPTIONS["sigma_levels"].check(sigma_levels)
        self.max_joint_dims = OPTIONS["max_joint_dims"].check(max_joint_dims)
        self.world_size = v.check_int(world_size, "world_size", minimum=1)
        self.rank = v.check_int(rank, "rank", minimum=0)
        if self.rank >= self.world_size:
            raise InputError(f"`rank` must be below world_size={world_size}, got {rank}")
        self.row_offset = v.check_int(row_offset, "row_offset", minimum=0)
        if self.row_offset and self.world_size > 1:
            raise InputError("`row_offset` needs world_size=1 (ranks interleave their rows)")
        self.ranks: frozenset[int] = frozenset({self.rank})
        self.n_items = 0  # samples along axis 0 over all batches
        self.n_rows = 0  # rows of the 2-D view over all batches (this rank's, unmerged)
        self.n_batches = 0
        self.notes: list[str] = []
        self._layout: tuple[tuple[int, ...], int | None, int, int, np.dtype[Any]] | None = None
        self._first: Any = None
        self._reservoir: Any = None
        self._prior: Any = None
        self._extremes: Any = None

    # -- layout -------------------------------------------------------------------------
    @property
    def n_dims(self) -> int | None:
        """Dimensions of the 2-D view (None before the first batch)."""
        return None if self._layout is None else self._layout[2]

    @property
    def sample_size(self) -> int:
        """Capacity of the seeded sample (analyze's default for this width)."""
        from .options import default_sample_size

        d = self.n_dims or 1
        if self._sample_size is None:
            return default_sample_size(self.test_samples, d)
        return v.check_int(self._sample_size, "sample_size", minimum=self.test_samples)

    def _rows(self, batch: Any, what: str) -> tuple[NDArray[Any], int]:
        """Return `batch` as a 2-D block of rows, checking it against earlier batches."""
        from .io.latents import open_latents

        arr = to_numpy(batch)
        where = f"batch {self.n_batches} ({what})"
        if arr.ndim >= 1 and arr.shape[0] == 0:
            raise InputError(f"{where} has 0 rows; pass batches of at least one sample")
        src = open_latents(arr, channel_axis=self.channel_axis, flatten=self.flatten, name=where)
        layout = (src.item_shape, src.channel_axis, src.n_dims, src.rows_per_item, src.dtype)
        if self._layout is None:
            self._start(layout)
            for note in src.notes:
                if note not in self.notes:
                    self.notes.append(note)
        elif layout[:4] != self._layout[:4]:
            raise InputError(
                f"{where} has samples of shape {src.item_shape} ({src.n_dims} dimensions) "
                f"but earlier batches had {self._layout[0]} ({self._layout[2]} dimensions); "
                "every batch of a stream needs the same shape apart from axis 0"
            )
        block = src.read_items(0, src.n_items)
        # later batches take the first batch's dtype (float32 or float64)
        dtype = self._layout[4] if self._layout is not None else src.dtype
        return np.ascontiguousarray(block, dtype=dtype), src.n_items

    def _start(self, layout: tuple[tuple[int, ...], int | None, int, int, np.dtype[Any]]) -> None:
        """Create the accumulators once the first batch fixes the width and dtype."""
        from .engine.accumulators import Exceedance, Extremes, Reservoir
        from .engine.plan import FirstPass

        self._layout = layout
        d, dtype = layout[2], layout[4]
        # the FirstPass keeps no sample: rows enter the stream's own reservoir under
        # their global row ids (see `rank`)
        self._first = FirstPass(
            d, dtype=dtype, seed=self.seed, sample_size=0, covariance=d <= self.max_joint_dims
        )
        self._reservoir = Reservoir(self.sample_size, d, self.seed, dtype)
        self._prior = Exceedance(self.levels, np.zeros(d), np.ones(d), dtype)
        self._extremes = Extremes(d)

    def start_source(self, source: Any) -> None:
        """Fix the layout from a :class:`~latentcheck.io.latents.LatentSource` (before pushing)."""
        if self._layout is not None:
            raise InputError("The stream already holds rows; start_source comes first")
        self._start(
            (
                source.item_shape,
                source.channel_axis,
                source.n_dims,
                source.rows_per_item,
                source.dtype,
            )
        )
        self.notes.extend(n for n in source.notes if n not in self.notes)

    # -- pushing ------------------------------------------------------------------------
    def update(self, batch: Any) -> None:
        """Add a batch of latents (same layouts as :func:`latentcheck.analyze`).

        Raises
        ------
        InputError
            A batch with 0 rows, a shape that differs from earlier batches, NaN or inf
            with ``nan="error"``, or that cannot be read as a float array.
        """
        block, items = self._rows(batch, "latents")
        self.push_rows(block, items)

    def push_rows(self, block: NDArray[Any], items: int) -> None:
        """Add `items` samples already laid out as a 2-D block of rows of this stream's width.

        What :meth:`update` does after reading a batch; the first call needs the layout set
        (by a first :meth:`update` or by :meth:`start_source`).
        """
        from .engine.accumulators import NonFinite
        from .engine.plan import finite_rows

        n = block.shape[0]
        if self.nan == "error":
            probe = NonFinite(block.shape[1])
            finite, _ = finite_rows(block, np.arange(n, dtype=np.int64), probe)
            if finite.shape[0] != n:
                raise InputError(
                    f"batch {self.n_batches} holds {int(probe.per_dim.sum())} non-finite "
                    f"values in {probe.rows} rows (first at its row {probe.first_row}, "
                    f"dimension {probe.first_dim}); use nan='omit' to leave those rows out"
                )
        start = self.row_offset + self.n_rows
        ids = np.arange(start, start + n, dtype=np.int64)
        self._first.push(block, ids)
        finite, ids = finite_rows(block, ids, None)
        if finite.shape[0]:
            self._reservoir.push(finite, self._global_ids(ids))
            self._prior.push(finite)
            self._extremes.push(finite)
        self.n_items += items
        self.n_rows += n
        self.n_batches += 1

    def _global_ids(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Return the global row ids of this rank's local row ids.

        Samples (items along axis 0) are interleaved across ranks, positions stay with
        their sample: local item k is global item ``k * world_size + rank``.
        """
        if self.world_size == 1:
            return ids
        assert self._layout is not None
        per_item = self._layout[3]
        item, pos = np.divmod(ids, per_item)
        out: NDArray[np.int64] = (item * self.world_size + self.rank) * per_item + pos
        return out

    def update_posterior(self, mu: Any, logvar: Any) -> None:
        """Add a batch of posterior parameters: one seeded draw z = mu + exp(logvar/2)·eps.

        The draws are what :func:`latentcheck.analyze` analyses for ``mu``/``logvar``
        without ``latents`` (the aggregate posterior); the noise comes from
        ``default_rng((seed, rank, batch number))``. The posterior block of ``analyze``
        (rate, active units) is not computed by a stream.
        """
        m = to_numpy(mu)
        lv = to_numpy(logvar)
        if m.shape != lv.shape:
            raise InputError(f"mu has shape {m.shape} but logvar has shape {lv.shape}")
        m64 = np.asarray(m, dtype=np.float64)
        lv64 = np.asarray(lv, dtype=np.float64)
        rng = np.random.default_rng((self.seed, self.rank, self.n_batches))
        z = m64 + np.exp(0.5 * lv64) * rng.standard_normal(m64.shape)
        self.update(z.astype(np.result_type(m.dtype, np.float32), copy=False))

    def sample_reservoir(self) -> Any:
        """Return a copy of the seeded sample's reservoir (what ``Analysis`` holds)."""
        if self._layout is None:
            raise InputError("The stream is empty: update it with a batch first")
        empty = type(self._reservoir)(self.sample_size, self._layout[2], self.seed, self._layout[4])
        return self._reservoir.merge(empty)

    # -- merging and state --------------------------------------------------------------
    def merge(self, other: Stream, *, rows_disjoint: bool = False) -> Stream:
        """Return a new stream holding the batches of self and `other` (neither changes).

        `other` is another rank's or worker's stream. Every exact figure is the same
        whatever the order and grouping of merges; so is the sample, since its keys hash
        global row ids (see `rank`). Pure, like every accumulator's merge
        (:mod:`latentcheck.engine.protocol`): keep the result, ``a = a.merge(b)``.
        `rows_disjoint=True` says the caller checked that the two hold different global
        rows (streams of one rank over separate row ranges, see `row_offset`), so equal
        ranks are no error.
        """
        if not isinstance(other, Stream):
            raise InputError(f"Can only merge a Stream, got a {type(other).__name__}")
        if other._layout is None and self._layout is not None:
            out = Stream.from_state(self.state())  # shares no accumulator with self
            out.rank = self.rank
            return out
        # a shallow copy: `_merge_into` replaces its accumulators, never writes into them
        out = copy.copy(self)
        out.notes = list(self.notes)
        return out._merge_into(other, rows_disjoint)

    def _merge_into(self, other: Stream, rows_disjoint: bool) -> Stream:
        """Merge `other` into this fresh copy (see :meth:`merge`) and return it."""
        if other._layout is None:
            return self
        if self._layout is None:
            other = Stream.from_state(other.state())  # share no accumulator with `other`
            self._copy_config(other)
        theirs = other._layout
        assert theirs is not None
        for name in ("seed", "world_size", "levels", "nan"):
            if getattr(self, name) != getattr(other, name):
                raise InputError(
                    f"Cannot merge streams with different {name}: "
                    f"{getattr(self, name)!r} and {getattr(other, name)!r}"
                )
        if self._layout is not None and theirs[:4] != self._layout[:4]:
            raise InputError(
                f"Cannot merge streams of samples of shape {self._layout[0]} and {theirs[0]}"
            )
        if self._layout is not None and theirs[4] != self._layout[4]:
            raise InputError(f"Cannot merge streams of {self._layout[4]} and {theirs[4]} latents")
        if self.ranks & other.ranks and self._layout is not None and not rows_disjoint:
            raise InputError(
                f"Both streams hold rows of rank(s) {sorted(self.ranks & other.ranks)}: "
                "give each rank's Stream its own `rank` (and the same world_size)"
            )
        if self._layout is None:
            self._layout = theirs
            self._first, self._prior, self._extremes = other._first, other._prior, other._extremes
            self._reservoir = other._reservoir
            self.ranks = other.ranks
        else:
            self._first = self._first.merge(other._first)
            self._reservoir = self._reservoir.merge(other._reservoir)
            self._prior = self._prior.merge(other._prior)
            self._extremes = self._extremes.merge(other._extremes)
            self.ranks = self.ranks | other.ranks
        self.n_items += other.n_items
        self.n_rows += other.n_rows
        self.n_batches += other.n_batches
        for note in other.notes:
            if note not in self.notes:
                self.notes.append(note)
        return self

    def _copy_config(self, other: Stream) -> None:
        for name in ("channel_axis", "flatten", "seed", "test_samples", "_sample_size", "nan"):
            setattr(self, name, getattr(other, name))
        self.levels, self.max_joint_dims = other.levels, other.max_joint_dims
        self.world_size = other.world_size

    def state(self) -> State:
        """Return the stream as a flat dict of numpy arrays (for ``np.savez``, no pickle)."""
        if self._layout is None:
            raise InputError("The stream is empty: update it with a batch first")
        first = self._first
        item_shape, axis, _, _, dtype = self._layout
        out: State = {
            "config.item_shape": np.array(item_shape, dtype=np.int64),
            "config.channel_axis": np.array(-1 if axis is None else axis),
            "config.flatten": np.array(self.flatten),
            "config.dtype": np.array(dtype.str),
            "config.seed": np.array(self.seed, dtype=np.int64),
            "config.test_samples": np.array(self.test_samples),
            "config.sample_size": np.array(self.sample_size),
            "config.nan": np.array(self.nan),
            "config.levels": np.array(self.levels, dtype=np.float64),
            "config.max_joint_dims": np.array(self.max_joint_dims),
            "config.world_size": np.array(self.world_size),
            "config.ranks": np.array(sorted(self.ranks), dtype=np.int64),
            "count.items": np.array(self.n_items, dtype=np.int64),
            "count.rows": np.array(self.n_rows, dtype=np.int64),
            "count.batches": np.array(self.n_batches, dtype=np.int64),
            "notes": np.array(self.notes, dtype=np.str_),
        }
        parts: dict[str, Any] = {
            "moments": first.moments,
            "nonfinite": first.nonfinite,
            "reservoir": self._reservoir,
            "prior": self._prior,
            "extremes": self._extremes,
        }
        if first.comoments is not None:
            parts["comoments"] = first.comoments
        for prefix, acc in parts.items():
            for key, value in acc.state().items():
                out[f"{prefix}.{key}"] = np.asarray(value)
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stream:
        """Rebuild a stream from :meth:`state` (e.g. another rank's, or an ``np.load``)."""
        from .engine.accumulators import (
            Comoments,
            Exceedance,
            Extremes,
            Moments,
            NonFinite,
            Reservoir,
        )
        from .engine.plan import FirstPass

        try:
            axis = int(state["config.channel_axis"])
            s = cls(
                channel_axis=axis if axis >= 0 else 1,
                flatten=bool(state["config.flatten"]),
                seed=int(state["config.seed"]),
                test_samples=int(state["config.test_samples"]),
                sample_size=int(state["config.sample_size"]),
                nan=str(state["config.nan"]),
                sigma_levels=[float(x) for x in np.asarray(state["config.levels"])],
                max_joint_dims=int(state["config.max_joint_dims"]),
                world_size=int(state["config.world_size"]),
            )
            s.ranks = frozenset(int(r) for r in np.asarray(state["config.ranks"]))
            s.rank = min(s.ranks)
            item_shape = tuple(int(x) for x in np.asarray(state["config.item_shape"]))
            dtype = np.dtype(str(state["config.dtype"]))

            def sub(prefix: str) -> dict[str, Any]:
                n = len(prefix) + 1
                return {k[n:]: val for k, val in state.items() if k.startswith(prefix + ".")}

            moments = Moments.from_state(sub("moments"))
            d = moments.n_dims
            if s.flatten and len(item_shape) > 1:
                layout_axis: int | None = None
            elif len(item_shape) == 1:
                layout_axis = 1
            else:
                layout_axis = axis
            rpi = int(np.prod(item_shape)) // d
            s._layout = (item_shape, layout_axis, d, rpi, dtype)
            first = FirstPass(d, dtype=dtype, seed=s.seed, sample_size=0, covariance=False)
            first._moments = moments
            if "comoments.mean" in state:
                first._comoments = Comoments.from_state(sub("comoments"))
            first.nonfinite = NonFinite.from_state(sub("nonfinite"))
            s._reservoir = Reservoir.from_state(sub("reservoir"))
            s._first = first
            s._prior = Exceedance.from_state(sub("prior"))
            s._extremes = Extremes.from_state(sub("extremes"))
            s.n_items = int(state["count.items"])
            s.n_rows = int(state["count.rows"])
            s.n_batches = int(state["count.batches"])
            s.notes = [str(x) for x in np.asarray(state["notes"]).tolist()]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"Not a latentcheck Stream state ({type(exc).__name__}: {exc})"
            ) from None
        return s

    def to_bytes(self) -> bytes:
        """Return :meth:`state` as ``.npz`` bytes (``allow_pickle=False`` reads them)."""
        buf = io.BytesIO()
        arrays: dict[str, Any] = self.state()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Stream:
        """Rebuild a stream from :meth:`to_bytes` output (never unpickles)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls.from_state({k: z[k] for k in z.files})

    # -- finishing ----------------------------------------------------------------------
    def report(self, **options: Any) -> Any:
        """Finish into a :class:`~latentcheck.model.report.Report` (the stream can go on after).

        `options` are the finishing options of :func:`latentcheck.analyze`: ``alpha``,
        ``top_pairs``, ``joint_samples``, ``energy_samples``, ``energy_resamples``,
        ``mcd_samples``, ``top_rows``, ``assume_scale``, ``assume_shift``.
        """
        from .analysis.stream_finish import finish

        if self._layout is None:
            raise InputError("The stream is empty: update it with at least 2 rows first")
        return finish(self, **options)


def gather(stream: Stream, group: Any = None) -> Stream:
    """Return the merge of every rank's `stream` over ``torch.distributed`` (all ranks).

    Each rank's state travels as ``.npz`` bytes in a uint8 tensor (no pickle): one
    all-gather of the sizes, one of the padded bytes. Call it on every rank (it is a
    collective); create each rank's stream with ``Stream(rank=dist.get_rank(),
    world_size=dist.get_world_size())``. Imports torch only when called.
    """
    import torch
    import torch.distributed as dist

    data = np.frombuffer(stream.to_bytes(), dtype=np.uint8)
    world = dist.get_world_size(group)
    backend = dist.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    size = torch.tensor([data.size], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    longest = int(max(int(s.item()) for s in sizes))
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    mine[: data.size] = torch.from_numpy(data.copy()).to(device)
    bufs = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(bufs, mine, group=group)
    merged: Stream | None = None
    for buf, n in zip(bufs, sizes, strict=True):
        part = Stream.from_bytes(buf[: int(n.item())].cpu().numpy().tobytes())
        merged = part if merged is None else merged.merge(part)
    assert merged is not None
    return merged
