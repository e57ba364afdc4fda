"""The accumulator contract: what every streaming statistic of latentcheck promises.

An accumulator summarises the rows pushed into it so that summaries of disjoint parts of
a data set combine exactly into the summary of their union. The engine relies on nothing
else: it cuts a pass into segments, feeds each segment into a fresh accumulator wherever
it likes (a thread, a forked process, a ``concurrent.futures`` executor, another
machine), merges the results along a tree of fixed shape and reads the statistics on the
driver.

The contract
------------
``push(block, row_ids)``
    Add the rows of `block`, an array of shape (n_rows, n_dims) in the data's dtype,
    whose global row indices are `row_ids` (int64, shape (n_rows,), increasing). The ids
    are what make the result independent of how the data was cut: the seeded sample keys
    rows by them, top-k lists and first-bad-row reports name them. Accumulators that do
    not need them accept and ignore them. Blocks may hold no rows. Accumulators that
    filter rows (non-finite values) do so themselves and keep the ids of what they keep.
``merge(other) -> new``
    Return a NEW accumulator holding the rows of both; neither operand changes (pure).
    Merging is associative, and commutative up to floating-point rounding (exact for the
    counts, the extremes and the sample, which keys rows by hashed global ids); an
    empty accumulator is its identity. ``a + b`` is an alias where defined. Why pure:
    an executor may hold on to a result (a Dask future, a retried task, a state merged
    into two trees), and a merge that wrote into its left operand would silently change
    it; a pure merge lets any tree of merges run in any order, in any process. The new
    accumulator may share read-only arrays with its operands (nothing writes into a
    stored array in place after a merge), so a pure merge costs no more copying than an
    in-place one.
``finish() -> self``
    Fold whatever is buffered (batched power sums, waiting exceedance values, the
    sample's unsorted buffer) into the state, and return self. It changes no statistic:
    every accessor and :meth:`state` agree before and after. Scheduler workers call it
    at the end of each segment, so that the expensive part runs where the data was read.
``state() -> dict[str, ndarray | int | float | str]``
    Export the complete state as a flat dict of numpy arrays and scalars (no objects, no
    pickle), suitable for ``np.savez`` or any wire format. Nested accumulators are
    flattened with dotted prefixes (``"moments.m2"``); an accumulator whose class the
    reader must be told about records it under ``"kind"`` (see :data:`REGISTRY`).
``from_state(state) -> accumulator`` (classmethod)
    Rebuild an accumulator whose :meth:`state` equals `state`, and which then merges and
    reports exactly as the original. Caches (scratch buffers, tiled thresholds) are not
    state: they are rebuilt empty.

Statistics are read through each class's own accessors (``Moments.var``,
``MahalanobisAccumulator.result``, ...): what a finished accumulator yields differs by
topic and is typed there.

Components that take something other than a block of rows are not accumulators in this
sense and are reached through one that is: ``PosteriorAccumulator.push(mu, logvar)``
through ``PosteriorPass`` (whose block is ``[mu | logvar]``), the tiled thresholds and
scratch blocks of :mod:`latentcheck.engine.kernels` through the passes that own them.

Side inputs (optional)
----------------------
A source may compute its rows from other arrays, which it can hand out with the rows
(``LatentSource.read_with(start, stop, parts)``: the posterior draw z = mu + sigma * eps
gives ``"posterior"``, the rows ``[mu | logvar]``). An accumulator that wants them names
them in ``side_inputs`` (a tuple of part names) and takes them, after each ``push``,
through ``push_side(parts, row_ids)``, a dict of blocks with the same rows and ids.
:class:`~latentcheck.engine.plan.FirstPass` does so for its ``extras``: pass 1 then feeds
the posterior's accumulator from the read it makes for the draw.

Every accumulator class is listed in :data:`REGISTRY` under a stable name, which
:func:`state_of` writes under ``"kind"`` and :func:`from_state` reads back;
``tests/test_engine_protocol.py`` runs each registered class through this contract.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "REGISTRY",
    "Accumulator",
    "State",
    "StateValue",
    "accumulator_class",
    "from_state",
    "state_of",
    "sub_state",
]

#: One value of a state: an array or a plain scalar (never an object to unpickle).
StateValue = NDArray[Any] | int | float | str
#: A flat, pickle-free state.
State = dict[str, StateValue]

A = TypeVar("A", bound="Accumulator")


@runtime_checkable
class Accumulator(Protocol):
    """A mergeable streaming summary of rows (see the module docstring for the contract)."""

    def push(self, block: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add the rows of `block` whose global row indices are `row_ids`."""

    def merge(self: A, other: A) -> A:
        """Return a new accumulator holding the rows of both (neither operand changes)."""

    def finish(self: A) -> A:
        """Fold what is buffered into the state and return self (no statistic changes)."""

    def state(self) -> dict[str, Any]:
        """Return the complete state as a flat dict of arrays and scalars."""

    @classmethod
    def from_state(cls: type[A], state: dict[str, Any]) -> A:
        """Rebuild an accumulator whose :meth:`state` equals `state`."""


#: Accumulator classes by stable name: "module:Class" paths, imported on first use so
#: that reading a state never imports more than the classes it names.
REGISTRY: dict[str, str] = {
    "moments": "latentcheck.engine.accumulators:Moments",
    "comoments": "latentcheck.engine.accumulators:Comoments",
    "extremes": "latentcheck.engine.tails:Extremes",
    "exceedance": "latentcheck.engine.tails:Exceedance",
    "nonfinite": "latentcheck.engine.accumulators:NonFinite",
    "reservoir": "latentcheck.engine.sample:Reservoir",
    "first_pass": "latentcheck.engine.plan:FirstPass",
    "second_pass": "latentcheck.engine.plan:SecondPass",
    "mardia": "latentcheck.stats.joint.mardia:MardiaAccumulator",
    "mahalanobis": "latentcheck.stats.joint.mahalanobis:MahalanobisAccumulator",
    "joint_pass": "latentcheck.analysis.joint:JointPass",
    "spatial": "latentcheck.stats.spatial.accumulator:SpatialAccumulator",
    "item_means": "latentcheck.stats.spatial.design_effect:ItemMeansAccumulator",
    "posterior_pass": "latentcheck.io.posterior:PosteriorPass",
}


def accumulator_class(kind: str) -> Any:
    """Return the class registered under `kind`."""
    try:
        where = REGISTRY[kind]
    except KeyError:
        raise ValueError(
            f"Unknown accumulator kind {kind!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def kind_of(acc: Any) -> str:
    """Return the registered name of `acc`'s class."""
    where = f"{type(acc).__module__}:{type(acc).__qualname__}"
    for kind, path in REGISTRY.items():
        if path == where:
            return kind
    raise ValueError(f"{type(acc).__name__} is not a registered accumulator")


def state_of(acc: Any, prefix: str = "") -> State:
    """Return `acc`'s state with its registered kind, every key under `prefix`."""
    out: State = {f"{prefix}kind": kind_of(acc)}
    out.update({f"{prefix}{k}": v for k, v in acc.state().items()})
    return out


def sub_state(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Return the entries of `state` under `prefix`, with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


def from_state(state: Mapping[str, Any], prefix: str = "") -> Any:
    """Rebuild the accumulator that :func:`state_of` wrote under `prefix`."""
    part = sub_state(state, prefix)
    kind = str(part.pop("kind"))
    return accumulator_class(kind).from_state(part)
