"""Segments of a pass and the pure unit of work: one segment into one accumulator.

A pass is cut into segments of consecutive chunks (:func:`~latentcheck.engine.scheduler.
segments_of`); :func:`run_segment` streams one segment into a fresh accumulator and
returns it, a pure function of (source, segment, factory) that any executor can run.
:func:`participate` is a worker's loop over the segments it takes from a shared queue
(:class:`Tokens`), and :func:`merge_in_order` merges the segments' accumulators in
segment order, the result's only order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..io.latents import LatentSource

__all__ = ["ThreadTokens", "Tokens", "merge_in_order", "participate", "run_segment"]


class Tokens(Protocol):
    """The queue of a pass's segments: each index is taken by exactly one worker."""

    def fill(self, count: int) -> None:
        """Queue the segment indices 0 .. count - 1 (the queue must be empty)."""

    def take(self) -> int | None:
        """Return the next segment index, or None when none is left."""

    def drain(self) -> None:
        """Empty the queue: workers stop after their current segment."""


class ThreadTokens:
    """The queue of segment indices for worker threads of one process."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._next = 0
        self._count = 0

    def fill(self, count: int) -> None:
        """Queue the segment indices 0 .. count - 1."""
        with self._lock:
            self._next, self._count = 0, count

    def take(self) -> int | None:
        """Return the next segment index, or None when none is left."""
        with self._lock:
            if self._next >= self._count:
                return None
            self._next += 1
            return self._next - 1

    def drain(self) -> None:
        """Empty the queue."""
        with self._lock:
            self._next = self._count


def run_segment(
    source: LatentSource,
    make: Callable[[], Any],
    segment: Sequence[tuple[int, int]],
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Return a fresh accumulator from `make()` fed the chunks of `segment`, finished.

    `segment` holds (start, stop) item ranges of `source`; each chunk is pushed with the
    global ids of its rows, and the accumulator is finished where the data was read. An
    accumulator with ``side_inputs`` also gets those parts of the same read through
    ``push_side`` (see :mod:`latentcheck.engine.protocol`).
    The result depends on its arguments alone.
    """
    acc = make()
    rows = source.rows_per_item
    # the arrays the rows are computed from, for accumulators that take them (see protocol)
    parts: tuple[str, ...] = tuple(getattr(acc, "side_inputs", ()))
    for start, stop in segment:
        ids = np.arange(start * rows, stop * rows, dtype=np.int64)
        if parts:
            block, side = source.read_with(start, stop, parts)
            acc.push(block, ids)
            acc.push_side(side, ids)
        else:
            acc.push(source.read_items(start, stop), ids)
        if progress is not None:
            progress(stop - start)
    return acc.finish()  # on the worker that streamed the segment


def participate(
    source: LatentSource,
    make: Callable[[], Any],
    segments: list[list[tuple[int, int]]],
    tokens: Tokens,
    progress: Callable[[int], None] | None,
    pack: Callable[[Any], Any] | None = None,
) -> list[tuple[int, Any]]:
    """Stream segments taken from `tokens` until none is left; return (index, accumulator).

    Each segment gets a fresh accumulator, so that what a worker returns does not depend
    on which other segments it took. `pack`, if given, turns each finished accumulator
    into what is returned in its place (a worker process pickles it).
    """
    out = []
    try:
        while (i := tokens.take()) is not None:
            acc = run_segment(source, make, segments[i], progress)
            out.append((i, acc if pack is None else pack(acc)))
    except BaseException:
        tokens.drain()  # the others stop after their current segment
        raise
    return out


def merge_in_order(parts: Sequence[tuple[int, Any]]) -> Any:
    """Merge the segments' accumulators in segment order (the result's only order)."""
    ordered = sorted(parts, key=lambda p: p[0])
    out = ordered[0][1]
    for _, acc in ordered[1:]:
        out = out.merge(acc)
    return out
