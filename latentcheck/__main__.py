"""The command line tool's entry point: ``latentcheck`` and ``python -m latentcheck``."""

from __future__ import annotations

import os


def main() -> None:
    """Run the command line interface with one BLAS thread unless the user chose otherwise.

    The tool parallelises with its own worker processes and runs BLAS single-threaded
    during an analysis; OpenBLAS would still start a helper thread per core when numpy
    and scipy load (and again after each fork), and each spins for a while when it
    starts. On the benchmark that cost 0.5 CPU-seconds and 0.3 s of wall time. The
    variable must be set before numpy loads, so this module imports nothing else first;
    the Python API leaves the caller's BLAS alone.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    main()
