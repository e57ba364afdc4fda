"""The pass plan: what each of the two streaming passes computes, chunk by chunk.

Pass 1 (:class:`FirstPass`) accumulates moments, co-moments, non-finite counts and the
seeded sample of rows. Its merged result is the summary that parametrises pass 2
(:class:`SecondPassFactory`: the final mean and std, the dtype, the joint whitening and
the spatial accumulators); pass 2 (:class:`SecondPass`) counts exceedances about them,
finds the extremes from the values beyond those thresholds and runs the further
second-pass accumulators (Mahalanobis distances, Mardia sums, spatial statistics).

Both follow the :class:`~latentcheck.engine.protocol.Accumulator` contract, so that
``first pass -> summary -> second pass -> finish`` runs on any executor: the unit of work
is :func:`~latentcheck.engine.segments.run_segment` (pass k over one segment of chunks,
from an accumulator factory that carries the summary), a pure function of its inputs.
Where the segments run is the scheduler's business (:mod:`latentcheck.engine.scheduler`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .accumulators import Comoments, Exceedance, Extremes, Moments, NonFinite, Reservoir
from .kernels import (
    Beyond,
    Scratch,
    TileCache,
    centre,
    column_dots,
    column_sums,
    sparse_flatnonzero,
    widen,
)
from .protocol import Accumulator, State, from_state, state_of, sub_state

F64 = NDArray[np.float64]

__all__ = ["FirstPass", "SecondPass", "SecondPassFactory", "drop_nonfinite", "finite_rows"]


def finite_rows(
    block: NDArray[Any], row_ids: NDArray[np.int64], nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Return the block without its non-finite rows, and the global ids of those kept.

    The column sums are a cheap finiteness check (sklearn's _assert_all_finite does the
    same with a sum): only a non-finite sum triggers the exact elementwise scan.
    """
    if np.isfinite(column_sums(block)).all():
        return block, row_ids
    return drop_nonfinite(block, row_ids, nonfinite)


def drop_nonfinite(
    block: NDArray[Any], row_ids: NDArray[np.int64], nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Return what :func:`finite_rows` does, for a block whose column sums are not finite.

    `nonfinite`, if given, counts the non-finite values left out.
    """
    finite = np.isfinite(block)
    rows_ok = finite.all(axis=1)
    if rows_ok.all():  # finite values whose sum overflowed the input dtype
        return block, row_ids
    if nonfinite is not None:
        nonfinite.push_mask(finite, row_ids)
    keep = np.flatnonzero(rows_ok)
    return block[keep], row_ids[keep]


class FirstPass:
    """Moments, co-moments, non-finite counts and the sample, fused per chunk.

    Each chunk's power sums wait in a list and join the moments a batch at a time
    (:meth:`Moments.push_many`): merging every chunk on its own took many small numpy
    calls per chunk. :attr:`moments` and :attr:`comoments` add what waits.

    `extras`, if given, makes further accumulators of the arrays the rows were computed
    from: each is fed the source's part of its name (see ``side_inputs`` in
    :mod:`latentcheck.engine.protocol`), so that posterior mode reads mu and logvar once,
    for the draw and the rate together.
    """

    #: chunks whose sums wait at most (bounds the list when no segment ends it)
    BATCH_CHUNKS = 256

    def __init__(
        self,
        n_dims: int,
        *,
        dtype: np.dtype[Any],
        seed: int,
        sample_size: int,
        covariance: bool,
        key_threshold: int | None = None,
        scratch: Scratch | None = None,
        extras: Callable[[], Mapping[str, Accumulator]] | None = None,
    ) -> None:
        self._scratch = Scratch() if scratch is None else scratch
        self.extras: dict[str, Any] = {} if extras is None else dict(extras())
        self._moments = Moments(n_dims)
        self._comoments = Comoments(n_dims) if covariance else None
        self.nonfinite = NonFinite(n_dims)
        self.reservoir = Reservoir(sample_size, n_dims, seed, dtype, threshold=key_threshold)
        # per waiting chunk: rows, shift, and its sums of (x - shift)^p for p = 1..4
        self._waiting: list[tuple[int, F64, F64, F64, F64, F64]] = []
        self._gram: F64 | None = None  # the sum of the waiting chunks' grams

    @property
    def moments(self) -> Moments:
        """Count, mean and central moment sums of every row pushed so far."""
        self._add_waiting()
        return self._moments

    @property
    def comoments(self) -> Comoments | None:
        """Co-moments of every row pushed so far (None without covariance)."""
        self._add_waiting()
        return self._comoments

    def push(self, block: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add one block of rows whose global row indices are `row_ids`."""
        n, d = block.shape
        if n == 0:
            return
        dev, sq = self._scratch.get(2, n, d)
        rows, sums = widen(block, dev)
        if not np.isfinite(sums).all():  # leave out the rows holding NaN or inf
            block, row_ids = drop_nonfinite(block, row_ids, self.nonfinite)
            n = block.shape[0]
            if n == 0:
                return
            dev, sq = self._scratch.get(2, n, d)
            rows, sums = widen(block, dev)
        # the shift is the chunk mean to float64 summation error, so that the sums of
        # powers about it do not cancel; s1 = Σ (x − shift) then makes the mean good to
        # eps·std (s1 = Σ x − n·shift would leave it at eps·|mean|·sqrt(n), which cost
        # the skewness five digits at |mean| = 3e6 std)
        shift = sums / n
        centre(rows, shift, dev)
        s1 = column_sums(dev)
        np.multiply(dev, dev, out=sq)
        if self._comoments is not None:
            gram = dev.T @ dev
            s2 = np.diagonal(gram).copy()
            if self._gram is None:
                self._gram = gram
            else:
                self._gram += gram
        else:
            s2 = column_sums(sq)
        s3 = column_dots(sq, dev)
        s4 = column_dots(sq, sq)
        self._waiting.append((n, shift, s1, s2, s3, s4))
        if len(self._waiting) >= self.BATCH_CHUNKS:
            self._add_waiting()
        self.reservoir.push(block, row_ids)

    @property
    def side_inputs(self) -> tuple[str, ...]:
        """The parts of each read that :meth:`push_side` takes: one per extra, by name."""
        return tuple(self.extras)

    def push_side(self, parts: Mapping[str, NDArray[Any]], row_ids: NDArray[np.int64]) -> None:
        """Feed each extra its part of the read whose rows :meth:`push` took."""
        for name, acc in self.extras.items():
            acc.push(parts[name], row_ids)

    def _add_waiting(self) -> None:
        """Add the waiting chunks' sums to the moments and co-moments."""
        if not self._waiting:
            return
        ns = np.array([w[0] for w in self._waiting], dtype=np.float64)
        shift, s1, s2, s3, s4 = (np.array([w[k] for w in self._waiting]) for k in range(1, 6))
        self._waiting = []
        self._moments.push_many(ns, shift, s1, s2, s3, s4)
        if self._comoments is not None and self._gram is not None:
            self._comoments.push_many(ns, shift, s1, self._gram)
        self._gram = None

    def finish(self) -> FirstPass:
        """Add the waiting sums; compact the segment's sample into one sorted block."""
        self._add_waiting()
        self.reservoir.finalize()
        for acc in self.extras.values():
            acc.finish()
        return self

    def merge(self, other: FirstPass) -> FirstPass:
        """Return a new first pass holding the rows of both (neither changes)."""
        out = copy.copy(self)
        out._waiting, out._gram = [], None  # the lists of both were added by the reads
        out._moments = self.moments.merge(other.moments)
        mine, theirs = self.comoments, other.comoments
        if mine is not None and theirs is not None:
            out._comoments = mine.merge(theirs)
        out.nonfinite = self.nonfinite.merge(other.nonfinite)
        out.reservoir = self.reservoir.merge(other.reservoir)
        out.extras = {name: acc.merge(other.extras[name]) for name, acc in self.extras.items()}
        return out

    __add__ = merge

    def state(self) -> State:
        """Return the state as a flat dict (see the Accumulator contract)."""
        out: State = {"covariance": int(self.comoments is not None)}
        parts: dict[str, Any] = {
            "moments": self.moments,
            "comoments": self.comoments,
            "nonfinite": self.nonfinite,
            "reservoir": self.reservoir,
        }
        for name, acc in parts.items():
            if acc is not None:
                out.update({f"{name}.{k}": v for k, v in acc.state().items()})
        if self.extras:  # with their registered kind, as SecondPass's
            out["extras"] = ",".join(self.extras)
            for name, acc in self.extras.items():
                out.update(state_of(acc, f"extras.{name}."))
        return out

    @classmethod
    def from_state(cls, state: State) -> FirstPass:
        """Rebuild a first pass from :meth:`state`."""
        out = cls.__new__(cls)
        out._scratch = Scratch()
        out._moments = Moments.from_state(sub_state(state, "moments."))
        covariance = bool(int(state["covariance"]))
        out._comoments = (
            Comoments.from_state(sub_state(state, "comoments.")) if covariance else None
        )
        out.nonfinite = NonFinite.from_state(sub_state(state, "nonfinite."))
        out.reservoir = Reservoir.from_state(sub_state(state, "reservoir."))
        out._waiting, out._gram = [], None
        names = [n for n in str(state.get("extras", "")).split(",") if n]
        out.extras = {n: from_state(state, f"extras.{n}.") for n in names}
        return out


class SecondPass:
    """Exceedance counts about the final mean/std and against the prior, extremes, extras.

    The extremes come from the values beyond the exceedance thresholds, which pass 2
    finds anyway (see :meth:`Extremes.push_beyond`): in pass 1 they cost a fold of every
    chunk.
    """

    def __init__(
        self,
        levels: Sequence[float],
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        dtype: np.dtype[Any],
        extras: Mapping[str, Accumulator] | None = None,
        tiles: TileCache | None = None,
        finite: bool = False,
        scratch: Scratch | None = None,
    ) -> None:
        # `finite`: the first pass found no NaN or inf, so chunks skip the check
        self.finite = finite
        self.centered = Exceedance(levels, mean, std, dtype)
        self.prior = Exceedance(levels, np.zeros_like(mean), np.ones_like(std), dtype)
        self.extremes = Extremes(mean.shape[0], scratch)
        self.extras: dict[str, Any] = dict(extras or {})
        # one comparison per side finds the candidates of both counts: beyond the looser
        # of their lowest thresholds (both exact in the data's dtype)
        self._hi = np.minimum(
            self.centered.thresholds(upper=True), self.prior.thresholds(upper=True)
        )
        self._lo = np.maximum(
            self.centered.thresholds(upper=False), self.prior.thresholds(upper=False)
        )
        # a factory shares one cache between the accumulators of its segments
        self._tiles = TileCache() if tiles is None else tiles

    def push(self, block: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add one block of rows whose global row indices are `row_ids`."""
        if not self.finite:
            block, row_ids = finite_rows(block, row_ids, None)
        n, d = block.shape
        if n == 0:
            return
        hi, lo = self._tiles.get(n, self._hi, self._lo)
        flat = block.reshape(-1)
        above = Beyond.gather(flat, d, sparse_flatnonzero(block > hi))
        below = Beyond.gather(flat, d, sparse_flatnonzero(block < lo))
        self.centered.push_beyond(n, above, below)
        self.prior.push_beyond(n, above, below)
        self.extremes.push_beyond(block, above, below)
        for acc in self.extras.values():
            acc.push(block, row_ids)

    def finish(self) -> SecondPass:
        """Count the exceedances still waiting (before the segment's state is sent)."""
        self.centered.count_waiting()
        self.prior.count_waiting()
        for acc in self.extras.values():
            acc.finish()
        return self

    def merge(self, other: SecondPass) -> SecondPass:
        """Return a new second pass holding the rows of both (neither changes)."""
        out = copy.copy(self)
        out.centered = self.centered.merge(other.centered)
        out.prior = self.prior.merge(other.prior)
        out.extremes = self.extremes.merge(other.extremes)
        out.extras = {name: acc.merge(other.extras[name]) for name, acc in self.extras.items()}
        return out

    __add__ = merge

    def state(self) -> State:
        """Return the state as a flat dict; the extras record their registered kind."""
        out: State = {
            "finite": int(self.finite),
            "extras": ",".join(self.extras),
        }
        for name in ("centered", "prior", "extremes"):
            out.update({f"{name}.{k}": v for k, v in getattr(self, name).state().items()})
        for name, acc in self.extras.items():
            out.update(state_of(acc, f"extras.{name}."))
        return out

    @classmethod
    def from_state(cls, state: State) -> SecondPass:
        """Rebuild a second pass from :meth:`state`."""
        centered = Exceedance.from_state(sub_state(state, "centered."))
        names = [n for n in str(state["extras"]).split(",") if n]
        out = cls(
            centered.levels.tolist(),
            centered.center,
            centered.scale,
            np.dtype(str(state["centered.dtype"])),
            extras={n: from_state(state, f"extras.{n}.") for n in names},
            finite=bool(int(state["finite"])),
        )
        out.centered = centered
        out.prior = Exceedance.from_state(sub_state(state, "prior."))
        out.extremes = Extremes.from_state(sub_state(state, "extremes."))
        return out


@dataclass(frozen=True)
class SecondPassFactory:
    """Makes empty :class:`SecondPass` accumulators; pickles, for worker processes.

    `joint` and `spatial` (each optional) make the second-pass extras: the joint
    accumulator, and a dict of spatial accumulators for conv sources.
    """

    levels: tuple[float, ...]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    dtype: np.dtype[Any]
    joint: Callable[[], Accumulator] | None = None
    spatial: Callable[[], Mapping[str, Accumulator]] | None = None
    #: thresholds tiled to chunks, shared by the segments' accumulators (pickles empty)
    tiles: TileCache = field(default_factory=TileCache, compare=False, repr=False)
    #: the first pass found every value finite: chunks skip the check (a column sum each)
    finite: bool = False
    #: blocks for the extremes' rare full folds, shared by the segments' accumulators
    scratch: Scratch = field(default_factory=Scratch, compare=False, repr=False)

    def __call__(self) -> SecondPass:
        """Return an empty second-pass accumulator about the first pass's summary."""
        extras: dict[str, Accumulator] = {}
        if self.joint is not None:
            extras["joint"] = self.joint()
        if self.spatial is not None:
            extras.update(self.spatial())
        return SecondPass(
            self.levels,
            self.mean,
            self.std,
            self.dtype,
            extras=extras,
            tiles=self.tiles,
            finite=self.finite,
            scratch=self.scratch,
        )
