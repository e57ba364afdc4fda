"""Benchmark: the whole `latentcheck report` process against the whole numpy process.

Writes (once) a 1 GiB float32 array of shape (4_000_000, 64) and times, alternating in one
run so that machine noise hits both alike:

- numpy:       python -c "import numpy as np; np.load(FILE, mmap_mode='r').mean(0)"
- latentcheck: latentcheck report FILE --format json  (the report goes to stdout, discarded)
- scipy:       the obvious script (load all as float64, scipy.stats.describe, np.percentile,
               np.cov, normaltest), once, with --scipy

It prints medians (wall and CPU seconds), the ratios to the numpy process, the peak
anonymous memory (RssAnon plus RssShmem, the shared memory through which workers return
their sample rows, polled from /proc and summed over the processes: the file-backed pages of
a memory map are not the tool's memory), and the time of the Henze-Zirkler test on
n = 5000, d = 64.

The timed runs are not polled: polling /proc every 2 ms takes 7-10% of a core, which a
command that keeps every core busy (the report, on 2 cores) loses and a single-threaded one
(numpy) does not. Peak memory comes from two further, polled runs of each command.

Run it with the BLAS-throttling variables of this machine unset, in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_report.py

Options: --rows, --dims, --repeat N, --scipy, --path FILE, --extra "ARGS" (passed to report).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SCIPY_SCRIPT = """
import sys, numpy as np, scipy.stats as st
x = np.load(sys.argv[1]).astype(np.float64)
st.describe(x, axis=0)
np.percentile(x, [0.1, 1, 5, 25, 50, 75, 95, 99, 99.9], axis=0)
np.cov(x, rowvar=False)
st.normaltest(x, axis=0)
"""


def make_data(path: Path, rows: int, dims: int, seed: int = 0) -> None:
    """Write a float32 .npy of shape (rows, dims) in chunks (heavy-tailed, correlated)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dims))
    mix = np.eye(dims) + 0.1 * rng.standard_normal((dims, dims))
    step = 250_000
    for i in range(0, rows, step):
        n = min(step, rows - i)
        z = rng.standard_normal((n, dims)) @ mix
        z[:, : dims // 4] = rng.standard_t(5, size=(n, dims // 4))
        out[i : i + n] = z.astype(np.float32)
    out.flush()
    del out


def _process_tree(pid: int) -> list[int]:
    """Return `pid` and its descendants (the report forks worker processes on Linux)."""
    out = [pid]
    for p in out:
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _rss_anon(pid: int) -> int:
    """Return the RssAnon plus RssShmem of `pid` in KiB (0 once it has exited)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def run(cmd: list[str], *, poll: bool = False) -> tuple[float, float, int]:
    """Run `cmd`; return (wall seconds, CPU seconds, peak anonymous memory in KiB).

    CPU seconds are user plus system time of the process and of the children it waited
    for (the report's workers). With `poll`, a thread samples the anonymous memory of the
    process tree every 2 ms (else the peak is 0): RssAnon plus RssShmem, summed over the
    processes. Copy-on-write pages a forked worker shares with its parent, and shared
    pages both map, count in both, so the sum overstates the memory slightly.
    """
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = sum(_rss_anon(pid) for pid in _process_tree(proc.pid))
            peak = max(peak, total)
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    if poll:
        th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    if poll:
        th.join()
    if proc.returncode != 0:
        raise SystemExit(f"command failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, peak


def bench_henze_zirkler(n: int = 5000, d: int = 64, repeat: int = 5) -> float:
    """Return the best time of Henze-Zirkler on an (n, d) sample (pairwise sums in blocks)."""
    from latentcheck.stats.multivariate import henze_zirkler

    x = np.random.default_rng(0).standard_normal((n, d))
    henze_zirkler(x[:256])  # warm-up: lazy imports, BLAS threads
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        henze_zirkler(x)
        best = min(best, time.perf_counter() - t0)
    return best


def _compile_package() -> None:
    """Write latentcheck's bytecode, as ``pip install`` does for an installed package.

    An editable install run with PYTHONDONTWRITEBYTECODE set (as on the development
    machine) would otherwise compile every module from source at each start: 35 ms for
    the CLI's imports alone, and more for the statistics modules imported later.
    """
    import compileall

    import latentcheck

    compileall.compile_dir(Path(latentcheck.__file__).parent, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scipy", action="store_true", help="also time the obvious scipy script")
    ap.add_argument("--path", type=Path, default=None)
    ap.add_argument("--extra", default="", help="extra arguments for latentcheck report")
    args = ap.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var} is set; it throttles BLAS. Run with: env -u {var} ...")
    path = args.path or HERE / "data" / f"bench_{args.rows}x{args.dims}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} ...", flush=True)
        make_data(path, args.rows, args.dims)
    size = path.stat().st_size / 2**30
    print(f"data: {path} ({args.rows} x {args.dims} float32, {size:.2f} GiB)")
    with open(path, "rb") as fh:  # warm the page cache
        while fh.read(1 << 24):
            pass
    _compile_package()
    py = sys.executable
    numpy_cmd = [py, "-c", f"import numpy as np; np.load({str(path)!r}, mmap_mode='r').mean(0)"]
    # stdout, never `-o /dev/null`: run as root, the atomic write would replace the device node
    lc_cmd = [py, "-m", "latentcheck", "report", str(path), "--format", "json"]
    lc_cmd += shlex.split(args.extra)
    times: dict[str, list[float]] = {"numpy": [], "latentcheck": []}
    cpu: dict[str, list[float]] = {"numpy": [], "latentcheck": []}
    mem: dict[str, list[int]] = {"numpy": [], "latentcheck": []}
    run(numpy_cmd)  # warm-up: imports into the OS cache
    run(lc_cmd)
    for _ in range(args.repeat):
        for name, cmd in (("numpy", numpy_cmd), ("latentcheck", lc_cmd)):
            wall, cpu_s, _ = run(cmd)
            times[name].append(wall)
            cpu[name].append(cpu_s)
    for _ in range(2):
        for name, cmd in (("numpy", numpy_cmd), ("latentcheck", lc_cmd)):
            mem[name].append(run(cmd, poll=True)[2])
    t_np = statistics.median(times["numpy"])
    t_lc = statistics.median(times["latentcheck"])
    for label, name in (("numpy process     ", "numpy"), ("latentcheck report", "latentcheck")):
        print(
            f"{label}   median {statistics.median(times[name]):.3f} s, "
            f"{statistics.median(cpu[name]):.2f} CPU-s  (runs: "
            + ", ".join(f"{t:.3f}" for t in times[name])
            + ")"
        )
    print(f"ratio latentcheck / numpy: {t_lc / t_np:.2f}x  (target <= 6x, aim 3x)")
    print(
        f"peak RssAnon+RssShmem: latentcheck {max(mem['latentcheck']) / 1024:.0f} MiB "
        f"(target < 300 MiB), numpy {max(mem['numpy']) / 1024:.0f} MiB"
    )
    print(f"Henze-Zirkler on n = 5000, d = 64: {bench_henze_zirkler():.3f} s (target < 2 s)")
    if args.scipy:
        script = HERE / "data" / "obvious_scipy.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(SCIPY_SCRIPT)
        wall, _, peak = run([py, str(script), str(path)], poll=True)
        print(
            f"obvious scipy script {wall:.3f} s, ratio {wall / t_np:.1f}x numpy, "
            f"{wall / t_lc:.1f}x latentcheck; peak RssAnon+RssShmem {peak / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
