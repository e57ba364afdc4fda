"""Benchmark: the whole `latentcheck report` process against the least work it must do.

Writes (once) a 1 GiB float32 array of shape (4_000_000, 64) and times, alternating in one
run so that machine noise hits all alike:

- reference:   the least work a covariance-aware report must do (DESIGN, issue 22): one
               single-threaded process (OPENBLAS/OMP/MKL_NUM_THREADS=1) that memory-maps
               the file and sums rows and X^T X in float64, 65536 rows at a time
- numpy:       python -c "import numpy as np; np.load(FILE, mmap_mode='r').mean(0)"
               (the old yardstick: memory-bound, so the ratio to it moves with the machine)
- latentcheck: latentcheck report FILE --format json  (the report goes to stdout, discarded)
- scipy:       the obvious script (load all as float64, scipy.stats.describe, np.percentile,
               np.cov, normaltest), once, with --scipy

It prints medians (wall and CPU seconds), the ratios to the reference (target <= 2x, aim
1.5x) and to the numpy process, the CPU model (/proc/cpuinfo) and the BLAS kernel
(threadpoolctl), the peak anonymous memory (RssAnon plus RssShmem, the shared memory through
which workers return their sample rows, polled from /proc and summed over the processes: the
file-backed pages of a memory map are not the tool's memory), and the time of the
Henze-Zirkler test on n = 5000, d = 64.

Two further modes, on by default (--modes main,posterior,small,scaling selects):

- posterior:   `report --mu MU --logvar LOGVAR` against the plain report of a z file of the
               same (n, d) (--post-rows, default 400_000; target <= 2x). MU, LOGVAR and Z are
               written once beside the data.
- small:       the report of a 5000 x 64 file against `python -c "import numpy, scipy.stats"`
               (target <= 1.5x).

and two, slow, off unless named (--modes scaling,sharded, 3 rounds unless --repeat):

- scaling:     CPU-s per GiB of the report and of the reference on d = 256 and d = 1024 at
               1 GiB and on conv latents (20000, 16, 32, 32) (1.25 GiB); the files are
               written once under benchmarks/data/ (3.3 GiB, git-ignored).
- sharded:     one data set in --shards N files (16) of --shard-gib GiB in all (1; the
               issue suggests 4), written once under benchmarks/data/: the local report of
               "DIR/*.npy" against `--scheduler local:2` (wall, CPU-s with the cluster's
               worker processes, peak memory per process, agreement of the two JSON
               reports), then `profile --row-offset` per shard and the report of the
               .lcprof files (issue 19; see bench_sharded.py).

The timed runs are not polled: polling /proc every 2 ms takes 7-10% of a core, which a
command that keeps every core busy (the report, on 2 cores) loses and a single-threaded one
(numpy) does not. Peak memory comes from two further, polled runs of each command.

Run it with the BLAS-throttling variables of this machine unset, in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE nice -n 5 python benchmarks/bench_report.py

Options: --rows, --dims, --repeat N, --quick (400_000 rows, 3 repeats), --modes, --post-rows,
--scipy, --path FILE, --extra "ARGS" (passed to report), --shards, --shard-gib,
--no-profiles.
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

# The least work a covariance-aware report must do: row sums and X^T X in float64, chunk by
# chunk, from a memory map, in one thread (the environment of its process pins BLAS to one).
REFERENCE_SCRIPT = """
import sys, numpy as np
x = np.load(sys.argv[1], mmap_mode="r")
d = x.shape[1]
s = np.zeros(d)
g = np.zeros((d, d))
if x.ndim == 2:  # rows of d values
    step = 65536
    for i in range(0, x.shape[0], step):
        c = x[i : i + step].astype(np.float64)
        s += c.sum(0)
        g += c.T @ c
else:  # conv latents (N, C, H, W): one row of C values per item and position
    step = max(1, 65536 // (x.size // (x.shape[0] * d)))
    for i in range(0, x.shape[0], step):
        c = np.moveaxis(x[i : i + step], 1, -1).reshape(-1, d).astype(np.float64)
        s += c.sum(0)
        g += c.T @ c
"""

ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
}


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


def make_conv_data(path: Path, shape: tuple[int, int, int, int], seed: int = 0) -> None:
    """Write a float32 .npy of conv latents (N, C, H, W) in chunks of items.

    Each channel is a spatially correlated field (white noise averaged over a 3 x 3 window,
    rescaled to unit variance, then mixed across channels as in `make_data`), so that the
    report's spatial statistics and its choice of well-separated positions do real work.
    """
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    mix = np.eye(c) + 0.1 * rng.standard_normal((c, c))
    step = 500
    for i in range(0, n, step):
        k = min(step, n - i)
        e = rng.standard_normal((k, c, h + 2, w + 2))
        f = sum(e[:, :, a : a + h, b : b + w] for a in range(3) for b in range(3)) / 3.0
        out[i : i + k] = np.einsum("nchw,cd->ndhw", f, mix).astype(np.float32)
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


def run(
    cmd: list[str], *, poll: bool = False, env: dict[str, str] | None = None
) -> tuple[float, float, int]:
    """Run `cmd`; return (wall seconds, CPU seconds, peak anonymous memory in KiB).

    `env` adds variables to the command's environment (the reference's one BLAS thread).
    CPU seconds are user plus system time of the process and of the children it waited
    for (the report's workers). With `poll`, a thread samples the anonymous memory of the
    process tree every 2 ms (else the peak is 0): RssAnon plus RssShmem, summed over the
    processes. Copy-on-write pages a forked worker shares with its parent, and shared
    pages both map, count in both, so the sum overstates the memory slightly.
    """
    peak = 0
    t0 = time.perf_counter()
    full_env = {**os.environ, **env} if env else None
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=full_env)
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
    from latentcheck.stats.joint.multivariate import henze_zirkler

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


def machine() -> tuple[str, str]:
    """Return the CPU model (with its widest vector extension) and the BLAS kernel in use.

    The kernel is threadpoolctl's view of the BLAS numpy loaded in this interpreter (the
    same numpy the timed processes import): its `internal_api`, `version` and `architecture`
    (OpenBLAS's core type, e.g. SkylakeX with AVX-512 or Haswell/Zen with AVX2).
    """
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    vec = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    cpu = f"{model}, {os.cpu_count()} cores, {vec}"
    try:
        import threadpoolctl

        info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        info = []
    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in info
    )
    return cpu, blas or "unknown BLAS"


Cmd = tuple[list[str], dict[str, str] | None]


def alternate(
    cmds: dict[str, Cmd], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each command once to warm up, then `repeat` rounds in turn; return walls, CPU-s."""
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd, env in cmds.values():  # warm-up: imports into the OS cache
        run(cmd, env=env)
    for _ in range(repeat):
        for name, (cmd, env) in cmds.items():
            wall, cpu_s, _ = run(cmd, env=env)
            walls[name].append(wall)
            cpus[name].append(cpu_s)
    return walls, cpus


def show(label: str, walls: list[float], cpus: list[float]) -> None:
    """Print the medians of one command's wall and CPU seconds, and its wall times."""
    print(
        f"{label:<34} median {statistics.median(walls):7.3f} s, "
        f"{statistics.median(cpus):6.2f} CPU-s  (runs: "
        + ", ".join(f"{t:.2f}" for t in walls)
        + ")"
    )


def ratio_line(
    label: str,
    num: str,
    den: str,
    walls: dict[str, list[float]],
    cpus: dict[str, list[float]],
    target: str,
) -> None:
    """Print the wall and CPU ratios of two commands' medians."""
    rw = statistics.median(walls[num]) / statistics.median(walls[den])
    rc = statistics.median(cpus[num]) / statistics.median(cpus[den])
    print(f"ratio {label}: {rw:.2f}x wall, {rc:.2f}x CPU-s  ({target})")


def warm(path: Path) -> None:
    """Read `path` once, so that every timed run finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def write_posterior(directory: Path, rows: int, dims: int, seed: int = 1) -> tuple[Path, ...]:
    """Write (once) mu, logvar and a z drawn from them, each a float32 (rows, dims) .npy.

    mu is correlated and heavy-tailed as in `make_data`, shrunk by 0.8; logvar is about
    log(0.2^2) with a quarter of the dimensions collapsed (mu near 0, logvar near 0), as a
    VAE with unused units gives. z = mu + exp(logvar / 2) * eps is the plain file of the
    same size the posterior report is timed against.
    """
    stem = directory / f"post_{rows}x{dims}"
    paths = tuple(Path(f"{stem}_{k}.npy") for k in ("mu", "logvar", "z"))
    if all(p.exists() for p in paths):
        return paths
    print(f"writing {stem}_{{mu,logvar,z}}.npy ...", flush=True)
    make_data(paths[0], rows, dims, seed=seed)
    mu = np.load(paths[0], mmap_mode="r+")
    rng = np.random.default_rng(seed + 1)
    out_lv = np.lib.format.open_memmap(paths[1], mode="w+", dtype=np.float32, shape=(rows, dims))
    out_z = np.lib.format.open_memmap(paths[2], mode="w+", dtype=np.float32, shape=(rows, dims))
    dead = dims - dims // 4
    step = 250_000
    for i in range(0, rows, step):
        n = min(step, rows - i)
        m = 0.8 * mu[i : i + n].astype(np.float64)
        m[:, dead:] *= 0.05
        lv = np.log(0.2**2) + 0.3 * rng.standard_normal((n, dims))
        lv[:, dead:] = 0.05 * rng.standard_normal((n, dims - dead))
        mu[i : i + n] = m.astype(np.float32)
        out_lv[i : i + n] = lv.astype(np.float32)
        z = m + np.exp(lv / 2) * rng.standard_normal((n, dims))
        out_z[i : i + n] = z.astype(np.float32)
    for arr in (mu, out_lv, out_z):
        arr.flush()
    del mu, out_lv, out_z
    return paths


def bench_main(args: argparse.Namespace, report: list[str], rows: int, repeat: int) -> None:
    """The 1 GiB file: report against the reference and the numpy process, memory, HZ."""
    py = sys.executable
    data_dir = HERE / "data"
    extra = shlex.split(args.extra)
    path = args.path or data_dir / f"bench_{rows}x{args.dims}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} ...", flush=True)
        make_data(path, rows, args.dims)
    shape = np.load(path, mmap_mode="r").shape
    size = path.stat().st_size / 2**30
    print(f"\n[main] data: {path} ({shape}, {size:.2f} GiB), {repeat} alternated rounds")
    warm(path)
    lc_cmd = [*report, str(path), "--format", "json", *extra]
    cmds: dict[str, Cmd] = {
        "reference": ([py, "-c", REFERENCE_SCRIPT, str(path)], ONE_THREAD),
        "numpy": (
            [py, "-c", f"import numpy as np; np.load({str(path)!r}, mmap_mode='r').mean(0)"],
            None,
        ),
        "latentcheck": (lc_cmd, None),
    }
    walls, cpus = alternate(cmds, repeat)
    show("reference (1 thread, sum + XtX f64)", walls["reference"], cpus["reference"])
    show("numpy mean process", walls["numpy"], cpus["numpy"])
    show("latentcheck report", walls["latentcheck"], cpus["latentcheck"])
    ratio_line(
        "report / reference", "latentcheck", "reference", walls, cpus, "target <= 2x, aim 1.5x"
    )
    ratio_line(
        "report / numpy (old yardstick)", "latentcheck", "numpy", walls, cpus, "old target <= 6x"
    )
    mem: dict[str, list[int]] = {"numpy": [], "latentcheck": []}
    for _ in range(2):
        for name in mem:
            cmd, env = cmds[name]
            mem[name].append(run(cmd, poll=True, env=env)[2])
    print(
        f"peak RssAnon+RssShmem: latentcheck {max(mem['latentcheck']) / 1024:.0f} MiB "
        f"(target < 300 MiB), numpy {max(mem['numpy']) / 1024:.0f} MiB"
    )
    print(f"Henze-Zirkler on n = 5000, d = 64: {bench_henze_zirkler():.3f} s (target < 2 s)")
    if args.scipy:
        script = data_dir / "obvious_scipy.py"
        script.write_text(SCIPY_SCRIPT)
        wall, _, peak = run([py, str(script), str(path)], poll=True)
        t_np = statistics.median(walls["numpy"])
        t_lc = statistics.median(walls["latentcheck"])
        print(
            f"obvious scipy script {wall:.3f} s, ratio {wall / t_np:.1f}x numpy, "
            f"{wall / t_lc:.1f}x latentcheck; peak RssAnon+RssShmem {peak / 1024:.0f} MiB"
        )


def bench_posterior(args: argparse.Namespace, report: list[str], repeat: int) -> None:
    """Posterior mode (--mu/--logvar) against the plain report of a z file of that size."""
    data_dir = HERE / "data"
    extra = shlex.split(args.extra)
    data_dir.mkdir(parents=True, exist_ok=True)
    mu, logvar, z = write_posterior(data_dir, args.post_rows, args.dims)
    for p in (mu, logvar, z):
        warm(p)
    print(f"\n[posterior] {args.post_rows} x {args.dims} float32, {repeat} alternated rounds")
    cmds: dict[str, Cmd] = {
        "plain": ([*report, str(z), "--format", "json", *extra], None),
        "posterior": (
            [*report, "--mu", str(mu), "--logvar", str(logvar), "--format", "json", *extra],
            None,
        ),
    }
    walls, cpus = alternate(cmds, repeat)
    show("report of z (plain)", walls["plain"], cpus["plain"])
    show("report --mu --logvar", walls["posterior"], cpus["posterior"])
    ratio_line("posterior / plain", "posterior", "plain", walls, cpus, "target <= 2x")


def bench_small(args: argparse.Namespace, report: list[str], repeat: int) -> None:
    """The report of a 5000 x d file against the process that imports numpy and scipy.stats."""
    py = sys.executable
    data_dir = HERE / "data"
    small = data_dir / f"small_5000x{args.dims}.npy"
    if not small.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        make_data(small, 5000, args.dims)
    warm(small)
    n_small = max(2 * repeat, 6)
    print(f"\n[small] {small} (5000 x {args.dims}), {n_small} alternated rounds")
    cmds: dict[str, Cmd] = {
        "imports": ([py, "-c", "import numpy, scipy.stats"], None),
        "report": ([*report, str(small), "--format", "json", *shlex.split(args.extra)], None),
    }
    walls, cpus = alternate(cmds, n_small)
    show("python -c 'import numpy, scipy.stats'", walls["imports"], cpus["imports"])
    show(f"latentcheck report (5000 x {args.dims})", walls["report"], cpus["report"])
    ratio_line("small report / imports", "report", "imports", walls, cpus, "target <= 1.5x")


#: The scaling cases of issue 22: (label, shape); the 2-D ones hold 1 GiB of float32.
SCALING_CASES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("d = 256, 1 GiB", (2**30 // (4 * 256), 256)),
    ("d = 1024, 1 GiB", (2**30 // (4 * 1024), 1024)),
    ("conv (20000, 16, 32, 32)", (20000, 16, 32, 32)),
)


def bench_scaling(args: argparse.Namespace, report: list[str], repeat: int) -> None:
    """CPU-s per GiB of the report and of the reference, for wide and conv latents.

    The data (3.3 GiB in all) is written once under benchmarks/data/ and kept.
    """
    py = sys.executable
    data_dir = HERE / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.extra)
    print(f"\n[scaling] CPU-s per GiB, {repeat} alternated rounds per case")
    for label, shape in SCALING_CASES:
        path = data_dir / ("scale_" + "x".join(map(str, shape)) + ".npy")
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            if len(shape) == 4:
                make_conv_data(path, (shape[0], shape[1], shape[2], shape[3]))
            else:
                make_data(path, shape[0], shape[1])
        gib = path.stat().st_size / 2**30
        warm(path)
        cmds: dict[str, Cmd] = {
            "reference": ([py, "-c", REFERENCE_SCRIPT, str(path)], ONE_THREAD),
            "latentcheck": ([*report, str(path), "--format", "json", *extra], None),
        }
        walls, cpus = alternate(cmds, repeat)
        ref_cpu = statistics.median(cpus["reference"])
        lc_cpu = statistics.median(cpus["latentcheck"])
        print(f"{label} ({gib:.2f} GiB):")
        show("  reference (1 thread, sum + XtX f64)", walls["reference"], cpus["reference"])
        show("  latentcheck report", walls["latentcheck"], cpus["latentcheck"])
        wall_ratio = statistics.median(walls["latentcheck"]) / statistics.median(walls["reference"])
        print(
            f"  CPU-s per GiB: latentcheck {lc_cpu / gib:.1f}, reference {ref_cpu / gib:.1f}; "
            f"ratio {lc_cpu / ref_cpu:.2f}x CPU-s, {wall_ratio:.2f}x wall"
        )


MODES = ("main", "posterior", "small", "scaling", "sharded")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="rows of the main file (4_000_000)")
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=None, help="alternated rounds (5)")
    ap.add_argument("--quick", action="store_true", help="400_000 rows and 3 rounds")
    ap.add_argument(
        "--modes",
        default="main,posterior,small",
        help="any of main,posterior,small,scaling,sharded (the last two are slow: add them "
        "by name)",
    )
    ap.add_argument("--shards", type=int, default=16, help="sharded mode: files (16)")
    ap.add_argument(
        "--shard-gib", type=float, default=1.0, help="sharded mode: GiB in all (1; issue: 4)"
    )
    ap.add_argument(
        "--no-profiles", action="store_true", help="sharded mode: skip the profile runs"
    )
    ap.add_argument("--post-rows", type=int, default=400_000, help="rows of the posterior files")
    ap.add_argument("--scipy", action="store_true", help="also time the obvious scipy script")
    ap.add_argument("--path", type=Path, default=None)
    ap.add_argument("--extra", default="", help="extra arguments for latentcheck report")
    args = ap.parse_args()
    rows = args.rows or (400_000 if args.quick else 4_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    if modes - set(MODES):
        ap.error(f"unknown mode(s) {sorted(modes - set(MODES))}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var} is set; it throttles BLAS. Run with: env -u {var} ...")
    cpu_name, blas = machine()
    print(f"CPU: {cpu_name}\nBLAS: {blas}\nnumpy {np.__version__}, Python {sys.version.split()[0]}")
    _compile_package()
    # stdout, never -o onto the null device: run as root, an atomic write would replace its node
    report = [sys.executable, "-m", "latentcheck", "report"]
    if "main" in modes:
        bench_main(args, report, rows, repeat)
    if "posterior" in modes:
        bench_posterior(args, report, repeat)
    if "small" in modes:
        bench_small(args, report, repeat)
    if "scaling" in modes:
        bench_scaling(args, report, args.repeat or 3)
    if "sharded" in modes:
        from bench_sharded import bench_sharded  # beside this script, on sys.path

        bench_sharded(args, report, args.repeat or 3)


if __name__ == "__main__":
    main()
