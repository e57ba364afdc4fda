"""The CLI's ``--scheduler``: a Dask executor from ``local:N`` or a scheduler address (#19).

``local:N`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes
for the duration; anything else is the address of a running Dask scheduler
(``tcp://host:8786``). Either way the passes run through
:func:`~latentcheck.engine.executor.use_executor` on ``Client.get_executor()``.

The local cluster must start beside any other Dask cluster on the machine. Its scheduler
serves HTTP routes (health, metrics) even without a dashboard, on port 8787 by default
(``dashboard_address=None`` falls back to it): with another scheduler on 8787 it took
another port with a ``UserWarning``, which under ``-W error`` (as the test suite runs)
failed the start, whenever two test runs overlapped. :func:`local_cluster_options` puts
that server on a free port of the loopback interface, and keeps Dask's log lines below
errors off the user's stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from ..errors import InputError

__all__ = ["CONNECT_TIMEOUT", "local_cluster_options", "scheduler_executor"]

#: How long the client waits for the local cluster's scheduler (its processes start
#: slowly on a busy machine); a remote address that does not answer fails after 10 s.
CONNECT_TIMEOUT = "60s"


def local_cluster_options(workers: int) -> dict[str, Any]:
    """Return the ``distributed.LocalCluster`` keywords of ``--scheduler local:N``.

    N single-threaded worker processes; no dashboard, and the scheduler's HTTP routes on
    a free loopback port instead of 8787 (see the module docstring); only errors logged.
    """
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        "silence_logs": logging.ERROR,
    }


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
                distributed.LocalCluster(**local_cluster_options(workers))
            )
            client = stack.enter_context(distributed.Client(cluster, timeout=CONNECT_TIMEOUT))
        else:
            try:
                client = stack.enter_context(distributed.Client(spec, timeout="10s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(
                    f"Cannot reach the Dask scheduler at {spec!r} ({exc}); give its address "
                    "(tcp://host:8786) or local:N"
                ) from None
        yield client.get_executor()
