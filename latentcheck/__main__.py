"""The command line tool's entry point: ``latentcheck`` and ``python -m latentcheck``."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    """Run the command line interface with one BLAS thread unless the user chose otherwise.

    The tool parallelises with its own worker processes and runs BLAS single-threaded
    during an analysis; OpenBLAS would still start a helper thread per core when numpy
    and scipy load (and again after each fork), and each spins for a while when it
    starts, which showed on the benchmark in CPU and wall time. The
    variable must be set before numpy loads, so this module imports nothing else first;
    the Python API leaves the caller's BLAS (and garbage collector) alone.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # one short-lived run: the cyclic collector would only walk, again and again, the
    # hundreds of thousands of objects that importing scipy creates (in the report's
    # tail, the first collection after the analysis examined them all); the few
    # cycles the run makes are freed when the process ends
    gc.disable()
    try:
        from .cli import main as cli_main

        cli_main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # Ctrl-C while click and the package load: the shell's 128 + 2
        print("latentcheck: interrupted", file=sys.stderr)
        code = 130
    _exit(code)


def _exit(code: object) -> None:
    """Flush stdout and stderr and end the process now, with SystemExit's exit code.

    The interpreter's own teardown (a full garbage collection and the unloading of every
    module, scipy's included) took measurable time after each report. By now the output is
    written (files through a temporary file and ``os.replace``), worker processes are
    stopped, and no other cleanup is registered, so none is skipped.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # SystemExit("message"): print it, status 1, as the interpreter does
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream
            status = status or 1
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    main()
