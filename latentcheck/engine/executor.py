"""Passes on any ``concurrent.futures.Executor`` (issue 19): thread or process pools, Dask.

Inside :func:`use_executor`, :func:`~latentcheck.engine.scheduler.start_pass` submits one
task per segment, :func:`segment_state` (the segment's accumulator, streamed and finished
where the task runs, returned as its pickle-free state, see
:mod:`latentcheck.engine.protocol`); the driver rebuilds the states in segment order and
merges them along the merge tree of the current fan-out
(:class:`~latentcheck.engine.segments.MergeTree`), the same fixed tree as the local
scheduler's, so the result does not depend on which worker ran which task or when.
``Client(...).get_executor()`` of ``dask.distributed`` is such an executor.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from ..io.latents import LatentSource
from .protocol import from_state, state_of
from .segments import (
    MERGE_FANOUT,
    MergeTree,
    check_fanout,
    current_merge_fanout,
    run_segment,
    use_merge_fanout,
)

__all__ = ["ExecutorPass", "current_executor", "engine_name", "segment_state", "use_executor"]

_EXECUTOR: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "latentcheck_executor", default=None
)


@contextlib.contextmanager
def use_executor(executor: object, *, merge_fanout: object = MERGE_FANOUT) -> Iterator[None]:
    """Run the passes started inside on `executor` (None: the local scheduler).

    Their segments' accumulators are merged along the tree of fan-out `merge_fanout`
    (see :mod:`latentcheck.engine.segments`), whatever the executor.
    """
    check_fanout(merge_fanout)
    if executor is not None and not isinstance(executor, Executor):
        # imported here: errors imports nothing of the engine
        from ..errors import InputError

        raise InputError(
            f"`executor` must be a concurrent.futures.Executor, got {type(executor).__name__}; "
            "for Dask pass Client(...).get_executor()"
        )
    token = _EXECUTOR.set(executor)
    try:
        with use_merge_fanout(merge_fanout):
            yield
    finally:
        _EXECUTOR.reset(token)


def current_executor() -> Executor | None:
    """Return the executor set by :func:`use_executor`, or None."""
    return _EXECUTOR.get()


def engine_name(executor: Executor | None) -> str:
    """Return how a report names the engine: "local", "dask" or "executor:<class>"."""
    if executor is None:
        return "local"
    if type(executor).__module__.split(".")[0] == "distributed":
        return "dask"
    return f"executor:{type(executor).__name__}"


def segment_state(
    source: LatentSource, make: Callable[[], Any], segment: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """Return the state of `make()` fed `segment` of `source` (an executor's task)."""
    return state_of(run_segment(source, make, segment))


class ExecutorPass:
    """A pass whose segments run as tasks on an executor; :meth:`result` merges them.

    The states are taken in segment order and merged along the tree of the fan-out
    current when the pass starts, each run as soon as its last segment is in.
    """

    def __init__(
        self,
        executor: Executor,
        source: LatentSource,
        make: Callable[[], Any],
        segments: list[list[tuple[int, int]]],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._futures: list[Future[Any] | None] = [
            executor.submit(segment_state, source, make, s) for s in segments
        ]
        self._items = [sum(b - a for a, b in s) for s in segments]
        self._fanout = current_merge_fanout()
        self._progress = progress
        self._result: Any = None
        self._done = False

    def result(self) -> Any:
        """Return the merged accumulator (re-raising a task's exception)."""
        if not self._done:
            tree = MergeTree(self._fanout)
            try:
                for i, items in enumerate(self._items):
                    future, self._futures[i] = self._futures[i], None  # merged: let it go
                    assert future is not None  # each is taken once
                    tree.add(from_state(future.result()))
                    if self._progress is not None:
                        self._progress(items)
            except BaseException:
                self.cancel()
                raise
            self._done = True
            self._result = tree.result()
        return self._result

    def cancel(self) -> None:
        """Cancel the tasks not yet started."""
        self._done = True
        for f in self._futures:
            if f is not None:
                f.cancel()
