"""Segments of a pass and the pure unit of work: one segment into one accumulator.

A pass is cut into segments of consecutive chunks (:func:`~latentcheck.engine.scheduler.
segments_of`); :func:`run_segment` streams one segment into a fresh accumulator and
returns it, a pure function of (source, segment, factory) that any executor can run.
:func:`participate` is a worker's loop over the segments it takes from a shared queue
(:class:`Tokens`), and :class:`MergeTree` merges the segments' accumulators along a tree
of fixed shape (:func:`merge_tree`), the result's only order.

The merge tree
--------------
The segments' accumulators are the leaves, in segment order. Each level groups the
nodes of the level below into runs of `fanout` consecutive nodes (the last run may be
shorter) and merges each run left to right, ``((a + b) + c) + ...``; a run of one node
goes up unchanged. The levels repeat until one node is left: the result. ``"linear"``
is one run of every leaf, the left-to-right chain in segment order. The shape depends
only on the number of segments and the fan-out, never on which worker ran a segment or
when it finished, so the result is the same to the last bit for any engine and any
number of workers given the same fan-out (:func:`use_merge_fanout`, recorded as
``settings.merge_fanout``). A tree is the pairwise scheme of Chan, Golub & LeVeque,
"Algorithms for computing the sample variance: analysis and recommendations", The
American Statistician 37(3), 1983: merged moments carry rounding error growing with
the tree's depth, O(log n) merges deep instead of O(n) for the chain.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from ..io.latents import LatentSource

__all__ = [
    "MERGE_FANOUT",
    "Fanout",
    "MergeTree",
    "ThreadTokens",
    "Tokens",
    "check_fanout",
    "current_merge_fanout",
    "merge_tree",
    "participate",
    "run_segment",
    "use_merge_fanout",
]

#: A merge tree's fan-out: nodes merged per run (2 or more), or "linear" (one chain).
Fanout = int | Literal["linear"]

#: The default fan-out of the merge tree (see the module docstring); the measurements
#: behind it are in the changelog of issue 19.
MERGE_FANOUT: Fanout = 8

_FANOUT: contextvars.ContextVar[Fanout] = contextvars.ContextVar(
    "latentcheck_merge_fanout", default=MERGE_FANOUT
)


def check_fanout(fanout: object) -> Fanout:
    """Return `fanout` if it is an integer of at least 2 or "linear", else raise InputError."""
    if fanout == "linear":
        return "linear"
    if isinstance(fanout, int | np.integer) and not isinstance(fanout, bool) and fanout >= 2:
        return int(fanout)
    # imported here: errors imports nothing of the engine
    from ..errors import InputError

    raise InputError(f"`merge_fanout` must be an integer of at least 2 or 'linear', got {fanout!r}")


@contextlib.contextmanager
def use_merge_fanout(fanout: object) -> Iterator[None]:
    """Merge the passes started inside along a tree of fan-out `fanout` (see above)."""
    token = _FANOUT.set(check_fanout(fanout))
    try:
        yield
    finally:
        _FANOUT.reset(token)


def current_merge_fanout() -> Fanout:
    """Return the fan-out set by :func:`use_merge_fanout` (default :data:`MERGE_FANOUT`)."""
    return _FANOUT.get()


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


class MergeTree:
    """The merge tree of a pass, fed its leaves in segment order (see the module docstring).

    :meth:`add` takes the next segment's accumulator and merges every run that it
    completes at once, so that a driver waiting for the segments in order merges while
    the others still stream, and holds at most ``fanout - 1`` nodes per level;
    :meth:`result` merges the runs left incomplete. The merges, and so the result, are
    those of :func:`merge_tree` whatever the timing.
    """

    def __init__(self, fanout: Fanout) -> None:
        width = check_fanout(fanout)
        self._linear = width == "linear"
        self._width = 0 if width == "linear" else width
        self._levels: list[list[Any]] = [[]]
        self._chain: Any = None  # "linear": the chain merged so far

    def add(self, acc: Any) -> None:
        """Add the next leaf (the accumulator of the next segment)."""
        if self._linear:
            self._chain = acc if self._chain is None else self._chain.merge(acc)
            return
        self._push(0, acc)

    def _push(self, level: int, node: Any) -> None:
        """Put `node` on `level`, merging the run it completes (and so on upwards)."""
        while True:
            if level == len(self._levels):
                self._levels.append([])
            run = self._levels[level]
            run.append(node)
            if len(run) < self._width:
                return
            node = _merge_run(run)
            run.clear()
            level += 1

    def result(self) -> Any:
        """Return the root, merging the incomplete runs level by level (once: it empties them).

        ValueError if no leaf was added.
        """
        if self._linear:
            if self._chain is None:
                raise ValueError("a merge tree needs at least one leaf")
            return self._chain
        level = 0
        while level < len(self._levels):
            run = self._levels[level]
            above = any(self._levels[level + 1 :])
            if not run:
                level += 1
                continue
            if len(run) == 1 and not above:
                return run[0]
            node = run[0] if len(run) == 1 else _merge_run(run)
            run.clear()
            self._push(level + 1, node)
            level += 1
        raise ValueError("a merge tree needs at least one leaf")


def _merge_run(run: Sequence[Any]) -> Any:
    """Merge a run of nodes left to right."""
    out = run[0]
    for acc in run[1:]:
        out = out.merge(acc)
    return out


def merge_tree(parts: Sequence[tuple[int, Any]], fanout: Fanout) -> Any:
    """Merge (segment index, accumulator) pairs along the tree of `fanout` over their order."""
    tree = MergeTree(fanout)
    for _, acc in sorted(parts, key=lambda p: p[0]):
        tree.add(acc)
    return tree.result()
