"""The CLI's ``--scheduler``: a Dask executor from ``local:N`` or a scheduler address (#19).

``local:N`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes
for the duration; anything else is the address of a running Dask scheduler
(``tcp://host:8786``). Either way the passes run through
:func:`~latentcheck.engine.executor.use_executor` on ``Client.get_executor()``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from ..errors import InputError

__all__ = ["scheduler_executor"]


def _local_workers(spec: str) -> int | None:
    """Return N of ``local:N`` (None for an address); InputError for a bad N."""
    if not spec.startswith("local:"):
        return None
    count = spec.partition(":")[2]
    if not count.isdigit() or int(count) < 1:
        raise InputError(
            f"--scheduler local:N needs a positive number of worker processes, got {spec!r}"
        )
    return int(count)


@contextlib.contextmanager
def scheduler_executor(spec: str | None) -> Iterator[Executor | None]:
    """Yield the executor that `spec` names (None for None), shut down afterwards."""
    if spec is None:
        yield None
        return
    workers = _local_workers(spec)
    try:
        # untyped: its calls are Any here
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise InputError(
            "--scheduler needs dask.distributed, which is not installed; "
            "pip install 'latentcheck[dask]'"
        ) from None
    with contextlib.ExitStack() as stack:
        if workers is not None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(spec, timeout="10s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(
                    f"Cannot reach the Dask scheduler at {spec!r} ({exc}); give its address "
                    "(tcp://host:8786) or local:N"
                ) from None
        yield client.get_executor()
