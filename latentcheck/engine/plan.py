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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..accumulate import (
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    NonFinite,
    Reservoir,
)
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
from .protocol import Accumulator

F64 = NDArray[np.float64]

__all__ = ["FirstPass", "SecondPass", "SecondPassFactory", "drop_nonfinite", "finite_rows"]


def finite_rows(
    block: NDArray[Any], row_start: int, nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64] | None]:
    """Return (block without non-finite rows, their row ids or None if all kept).

    The column sums are a cheap finiteness check (sklearn's _assert_all_finite does the
    same with a sum): only a non-finite sum triggers the exact elementwise scan.
    """
    if np.isfinite(column_sums(block)).all():
        return block, None
    return drop_nonfinite(block, row_start, nonfinite)


def drop_nonfinite(
    block: NDArray[Any], row_start: int, nonfinite: NonFinite | None
) -> tuple[NDArray[Any], NDArray[np.int64] | None]:
    """Return what :func:`finite_rows` does, for a block whose column sums are not finite."""
    finite = np.isfinite(block)
    rows_ok = finite.all(axis=1)
    if rows_ok.all():  # finite values whose sum overflowed the input dtype
        return block, None
    if nonfinite is not None:
        nonfinite.push_mask(finite, row_start)
    keep = np.flatnonzero(rows_ok)
    return block[keep], row_start + keep.astype(np.int64)


class FirstPass:
    """Moments, co-moments, non-finite counts and the sample, fused per chunk.

    Each chunk's power sums wait in a list and join the moments a batch at a time
    (:meth:`Moments.push_many`): merging every chunk on its own took 40 us of small numpy
    calls per chunk, 4% of the pass. :attr:`moments` and :attr:`comoments` add what waits.
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
    ) -> None:
        self._scratch = Scratch() if scratch is None else scratch
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

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        n, d = block.shape
        if n == 0:
            return
        dev, sq = self._scratch.get(2, n, d)
        rows, sums = widen(block, dev)
        row_ids = None
        if not np.isfinite(sums).all():  # leave out the rows holding NaN or inf
            block, row_ids = drop_nonfinite(block, row_start, self.nonfinite)
            n = block.shape[0]
            if n == 0:
                return
            dev, sq = self._scratch.get(2, n, d)
            rows, sums = widen(block, dev)
        if row_ids is None:
            row_ids = np.arange(row_start, row_start + n, dtype=np.int64)
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

    def finish(self) -> None:
        """Add the waiting sums; compact the segment's sample into one sorted block."""
        self._add_waiting()
        self.reservoir.finalize()

    def merge(self, other: FirstPass) -> FirstPass:
        """Merge `other` into self (in place) and return self."""
        self._moments = self.moments.merge(other.moments)
        mine, theirs = self.comoments, other.comoments
        if mine is not None and theirs is not None:
            self._comoments = mine.merge(theirs)
        self.nonfinite = self.nonfinite.merge(other.nonfinite)
        self.reservoir = self.reservoir.merge(other.reservoir)
        return self


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

    def push(self, block: NDArray[Any], row_start: int) -> None:
        """Add one block of rows whose first global row index is `row_start`."""
        row_ids = None
        if not self.finite:
            block, row_ids = finite_rows(block, row_start, None)
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
        if self.extras:
            if row_ids is None:
                row_ids = np.arange(row_start, row_start + block.shape[0], dtype=np.int64)
            for acc in self.extras.values():
                acc.push(block, row_ids)

    def finish(self) -> None:
        """Count the exceedances still waiting (before the segment's state is sent)."""
        self.centered.count_waiting()
        self.prior.count_waiting()

    def merge(self, other: SecondPass) -> SecondPass:
        """Merge `other` into self (in place) and return self."""
        self.centered = self.centered.merge(other.centered)
        self.prior = self.prior.merge(other.prior)
        self.extremes = self.extremes.merge(other.extremes)
        for name, acc in other.extras.items():
            self.extras[name] = self.extras[name].merge(acc)
        return self


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
