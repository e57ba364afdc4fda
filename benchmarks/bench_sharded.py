"""The sharded mode of bench_report.py (issue 19): one data set in N shards, three ways.

`bench_report.py --modes sharded` writes (once) N shards (`--shards`, default 16) of one
float32 data set of `--shard-gib` GiB in all (default 1; the issue suggests 4) under
benchmarks/data/ (git-ignored) and reports, in one run:

- (a) local:   `latentcheck report "DIR/*.npy" --format json`, the default local engine
               (one process, forking one worker per core beyond the first on Linux);
- (b) dask:    the same with `--scheduler local:2` (a LocalCluster of 2 single-threaded
               worker processes, started and stopped by the command);
- (c) profile: `latentcheck profile SHARD --row-offset N -o SHARD.lcprof` per shard, one
               after the other, then `latentcheck report "DIR/*.lcprof" --format json`.

(a) and (b) alternate for `--repeat` rounds (3 by default). For each it gives wall and
CPU-seconds, and (of its last run) the CPU time and peak memory of each process.
CPU-seconds are `wait4`'s user plus system time of the command and of the descendants it
waited for; a thread also polls the process tree (psutil, every 0.1 s, cheap at that rate)
for each process's own CPU time, so that the workers' share is shown and a worker nobody
waited for would still count (the larger of the two totals is reported). Peak memory per
process is the polled peak of RssAnon plus RssShmem (the tool's own memory; file-backed
pages are the page cache's) and the kernel's exact high-water mark of the whole resident
set, VmHWM (libraries and mapped file pages included).

Agreement is read off the JSON reports, flattened to key paths: the largest relative and
absolute differences over the dimensions' moments and KL (`dims[*].mean/std/skewness/
excess_kurtosis/kl_gauss`, `summary.kl_gauss_sum`, `joint.kl_gauss`), over the quantiles
and tests (most on the seeded sample, some over all rows), and over every other
floating-point figure; the non-float
values that differ; whether the top rows' ids (`*.top_rows[*].row`) are identical. The
JSON reports do not list the seeded sample's row ids: a bit-identical sample shows as
differences of 0.0 in every quantile and test computed on it. For the profiles, the
figures read off the t-digest sketches (the k-sigma outlier rates about the final mean and
what derives from them) are compared with the resolution the report states in
`settings.profile.outlier_rate_error` (not a worst-case bound: t-digests have none), and
the figures a merged profile takes from the
seeded sample instead of all rows (Mahalanobis, Mardia's kurtosis, the verdict built on
them) are left out of the exact comparison.

Needs the `dask` extra (dask.distributed, which brings psutil).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

#: The figures "moments and KL" of the agreement, as flattened key paths end.
MOMENT_KEYS = (".mean", ".std", ".skewness", ".excess_kurtosis", ".kl_gauss")
#: Key paths that differ between engines by design.
IGNORED = {".created_at", ".settings.engine", ".settings.threads"}


def make_shards(directory: Path, n_shards: int, rows: int, dims: int, seed: int = 0) -> list[Path]:
    """Write (once) `n_shards` float32 .npy files of (rows, dims): consecutive parts of one set.

    The recipe is bench_report's `make_data` (correlated through one mixing matrix, the
    first quarter of the dimensions Student t with 5 degrees of freedom), drawn from one
    generator across the shards, so that the shards are one data set. A `complete` marker
    is written last: an interrupted run writes them again.
    """
    paths = [directory / f"shard_{i:03d}.npy" for i in range(n_shards)]
    marker = directory / "complete"
    if marker.exists() and all(p.exists() for p in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    print(f"writing {n_shards} shards of ({rows}, {dims}) to {directory} ...", flush=True)
    rng = np.random.default_rng(seed)
    mix = np.eye(dims) + 0.1 * rng.standard_normal((dims, dims))
    step = 131_072
    for path in paths:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dims))
        for i in range(0, rows, step):
            n = min(step, rows - i)
            z = rng.standard_normal((n, dims)) @ mix
            z[:, : dims // 4] = rng.standard_t(5, size=(n, dims // 4))
            out[i : i + n] = z.astype(np.float32)
        out.flush()
        del out
    marker.write_text("")
    return paths


def _status_kib(pid: int, keys: tuple[str, ...]) -> int:
    """Return the sum of the /proc/PID/status fields `keys` in KiB (0 once it has exited)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(keys):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def _role(cmdline: list[str]) -> str:
    """Name a descendant of the command by its command line."""
    text = " ".join(cmdline)
    if "resource_tracker" in text or "forkserver" in text:
        return "helper"
    if "spawn_main" in text:
        return "dask worker"
    return "worker"  # the local engine's forked workers keep the parent's command line


@dataclass
class Proc:
    """What the poller saw of one process of the tree."""

    role: str
    cpu: float = 0.0  # its own user + system seconds, last seen
    peak_anon_kib: int = 0  # RssAnon + RssShmem, polled
    hwm_kib: int = 0  # VmHWM, last seen


@dataclass
class Usage:
    """One run of a command: wall, CPU-seconds (wait4, polled) and its processes."""

    wall: float
    cpu_wait4: float
    procs: dict[tuple[int, float], Proc] = field(default_factory=dict)

    @property
    def cpu_polled(self) -> float:
        return sum(p.cpu for p in self.procs.values())

    @property
    def cpu(self) -> float:
        return max(self.cpu_wait4, self.cpu_polled)

    def of(self, role: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.role == role]


def run_tree(cmd: list[str], out: Path | None = None, interval: float = 0.1) -> Usage:
    """Run `cmd` (stdout to `out`), polling its process tree; fail loudly on an error exit."""
    import psutil

    t0 = time.perf_counter()
    with open(out, "wb") if out else open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink)
        root = psutil.Process(proc.pid)
        seen: dict[tuple[int, float], Proc] = {}
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    tree = []
                for p in tree:
                    try:
                        with p.oneshot():
                            key = (p.pid, p.create_time())
                            # read each time: a spawned process shows its parent's command
                            # line until it execs
                            role = "driver" if p.pid == root.pid else _role(p.cmdline())
                            t = p.cpu_times()
                    except psutil.Error:
                        continue
                    rec = seen.setdefault(key, Proc(role))
                    rec.role = role
                    rec.cpu = max(rec.cpu, t.user + t.system)
                    anon = _status_kib(p.pid, ("RssAnon:", "RssShmem:"))
                    rec.peak_anon_kib = max(rec.peak_anon_kib, anon)
                    rec.hwm_kib = max(rec.hwm_kib, _status_kib(p.pid, ("VmHWM:",)))
                time.sleep(interval)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed with exit code {code}: {shlex.join(cmd)}")
    return Usage(wall, usage.ru_utime + usage.ru_stime, seen)


def flatten(d: Any, path: str = "") -> dict[str, Any]:
    """Return the leaves of a JSON value by key path (`.dims[3].mean`)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{path}.{k}"))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{path}[{i}]"))
    else:
        out[path] = d
    return out


def _rel(a: float, b: float) -> float:
    """Relative difference of two figures (0 for equal ones, NaN and inf included)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def _is_moment(key: str) -> bool:
    return (key.startswith(".dims[") and key.endswith(MOMENT_KEYS)) or key in (
        ".summary.kl_gauss_sum",
        ".joint.kl_gauss",
    )


def agreement(
    got: dict[str, Any], want: dict[str, Any], skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Compare two flattened reports: the largest relative difference per kind of figure.

    Kinds: "moments" (the dimensions' moments and KL), "sample" (quantiles and tests, most
    on the seeded sample), "other" (every other float). Keys starting with one of `skip` are left
    out (and counted); non-float values that differ are listed; "ids_same" says whether the
    top rows' ids (`*.top_rows[*].row`) are identical.
    """
    worst = {"moments": 0.0, "sample": 0.0, "other": 0.0}
    worst_key = dict.fromkeys(worst, "")
    absolute = dict.fromkeys(worst, 0.0)
    differ: list[str] = []
    skipped = 0
    ids: list[str] = []
    for key in sorted(set(got) | set(want)):
        if key in IGNORED:
            continue
        if key.startswith(skip):
            skipped += 1
            continue
        a, b = got.get(key, "<missing>"), want.get(key, "<missing>")
        if ".top_rows[" in key and key.endswith(".row"):
            ids.append(key)
        if isinstance(a, float) and isinstance(b, float):
            kind = (
                "moments"
                if _is_moment(key)
                else "sample"
                if ".quantiles." in key or ".tests." in key
                else "other"
            )
            r = _rel(a, b)
            if r > worst[kind] or not worst_key[kind]:
                worst[kind], worst_key[kind] = max(r, worst[kind]), key
            if math.isfinite(a) and math.isfinite(b):
                absolute[kind] = max(absolute[kind], abs(a - b))
        elif a != b:
            differ.append(key)
    return {
        "worst": worst,
        "worst_key": worst_key,
        "absolute": absolute,
        "differ": differ,
        "skipped": skipped,
        "ids_same": all(got.get(k) == want.get(k) for k in ids),
        "n_ids": len(ids),
    }


def show_agreement(label: str, agr: dict[str, Any]) -> None:
    """Print the agreement of two reports (and the keys whose non-float values differ)."""
    ids = (
        "n/a"
        if not agr["n_ids"]
        else f"identical ({agr['n_ids']})"
        if agr["ids_same"]
        else "DIFFER"
    )
    print(f"agreement {label}: top-row ids {ids}; largest relative (absolute) difference of")
    names = {
        "moments": "the dims' moments and KL",
        "sample": "quantiles and tests",
        "other": "every other float",
    }
    for kind, name in names.items():
        rel, key = agr["worst"][kind], agr["worst_key"][kind]
        print(
            f"  {name:<32} {rel:.1e} ({agr['absolute'][kind]:.1e})" + (f"  at {key}" if rel else "")
        )
    if agr["skipped"]:
        print(f"  ({agr['skipped']} sketch- or sample-based figures left out, see below)")
    if agr["differ"]:
        print(f"  non-float values that differ ({len(agr['differ'])}): {agr['differ'][:8]}")


def show_usage(label: str, runs: list[Usage]) -> None:
    """Print medians of wall and CPU-s, the workers' share, and peak memory per process."""
    walls = [u.wall for u in runs]
    cpus = [u.cpu for u in runs]
    print(
        f"{label:<44} median {statistics.median(walls):6.2f} s, "
        f"{statistics.median(cpus):6.2f} CPU-s  (runs: "
        + ", ".join(f"{w:.2f} s/{c:.2f}" for w, c in zip(walls, cpus, strict=True))
        + ")"
    )
    last = runs[-1]
    for role in ("driver", "worker", "dask worker", "helper"):
        # a fork that lives less than a poll's interval shows no CPU time of its own
        procs = [p for p in last.of(role) if p.cpu >= 0.01 or role == "helper"]
        brief = len(last.of(role)) - len(procs)
        if not procs:
            continue
        print(
            f"  {role:<12} x{len(procs)}: CPU-s "
            + ", ".join(f"{p.cpu:.2f}" for p in procs)
            + "; peak RssAnon+RssShmem "
            + ", ".join(f"{p.peak_anon_kib / 1024:.0f}" for p in procs)
            + " MiB; VmHWM "
            + ", ".join(f"{p.hwm_kib / 1024:.0f}" for p in procs)
            + " MiB"
            + (f" (and {brief} short-lived fork(s) under 0.01 CPU-s)" if brief else "")
        )
    print(f"  CPU-s of the last run: wait4 {last.cpu_wait4:.2f}, polled sum {last.cpu_polled:.2f}")


def _profile_bound(report: dict[str, Any], key: str = "outlier_rate_error") -> float:
    """Return the largest outlier-rate error the merged profile's report states under `key`."""
    bound = (report["settings"].get("profile") or {}).get(key) or {}
    return max((float(v) for v in bound.values()), default=float("nan"))


def bench_profiles(
    report: list[str], shards: list[Path], rows: int, out_dir: Path, want: dict[str, Any]
) -> None:
    """(c) one `profile` per shard with --row-offset, then one `report` of the .lcprof files."""
    profile = [*report[:-1], "profile"]
    per: list[Usage] = []
    for i, shard in enumerate(shards):
        target = out_dir / f"{shard.stem}.lcprof"
        cmd = [*profile, str(shard), "--row-offset", str(i * rows), "-o", str(target)]
        per.append(run_tree(cmd))
    out = out_dir / "report_profiles.json"
    merged = run_tree([*report, str(out_dir / "*.lcprof"), "--format", "json"], out)
    p_wall, p_cpu = sum(u.wall for u in per), sum(u.cpu for u in per)
    print(
        f"(c) profile per shard ({len(per)} runs, in turn)     {p_wall:6.2f} s, {p_cpu:6.2f} CPU-s "
        f"(per shard median {statistics.median(u.wall for u in per):.2f} s, "
        f"{statistics.median(u.cpu for u in per):.2f} CPU-s; peak RssAnon+RssShmem "
        f"{max(p.peak_anon_kib for u in per for p in u.procs.values()) / 1024:.0f} MiB)"
    )
    show_usage("    report of the .lcprof files", [merged])
    print(f"    profiles + report: {p_wall + merged.wall:.2f} s, {p_cpu + merged.cpu:.2f} CPU-s")
    got = json.loads(out.read_text())
    flat = flatten(got)
    # read off the sketches (k-sigma rates about the final mean) or, in a merged profile,
    # taken from the seeded sample (Mahalanobis): not exact by design
    sketched = (".summary.outlier_rate", ".summary.outlier_ratio", ".joint.mahalanobis")
    sampled = (".joint.tests.mardia_kurtosis", ".summary.verdict", ".summary.findings")
    skip = (*sketched, *sampled, ".settings.profile", ".settings.mode", ".input.notes")
    dims_rates = tuple(
        k
        for k in want
        if k.startswith(".dims[") and (".outlier_rate." in k or ".outlier_ratio." in k)
    )
    agr = agreement(flat, want, skip=(*skip, *dims_rates))
    show_agreement("(c) profiles vs (a)", agr)
    rate_keys = [k for k in want if ".outlier_rate." in k and k.startswith((".dims[", ".summary."))]
    err = max(abs(flat[k] - want[k]) for k in rate_keys)
    print(
        f"    k-sigma outlier rates (from the sketches): max abs diff {err:.1e} "
        f"against a stated resolution of {_profile_bound(got):.1e} ({len(rate_keys)} rates; "
        "measured at the prior thresholds: "
        f"{_profile_bound(got, 'measured_outlier_rate_error'):.1e})"
    )


def bench_sharded(args: Any, report: list[str], repeat: int) -> None:
    """Single-process report, `--scheduler local:2`, and profiles of one sharded data set."""
    try:
        import distributed  # noqa: F401
        import psutil  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the sharded mode needs pip install '.[dask]' (dask.distributed, psutil)"
        ) from None
    n, dims = args.shards, args.dims
    rows = int(args.shard_gib * 2**30) // (n * 4 * dims)
    directory = HERE / "data" / f"sharded_{n}x{rows}x{dims}"
    shards = make_shards(directory, n, rows, dims)
    total = sum(p.stat().st_size for p in shards) / 2**30
    for p in shards:  # into the page cache, so that every run finds the data there
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass
    print(
        f"\n[sharded] {n} shards of ({rows}, {dims}) float32, {total:.2f} GiB in all "
        f"({n * rows} rows), {directory}; {repeat} alternated rounds of (a) and (b)"
    )
    out_dir = directory.with_name(directory.name + "_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.lcprof"):  # a profile left by an interrupted run
        stale.unlink()
    glob = str(directory / "*.npy")
    extra = shlex.split(args.extra)
    cmds = {
        "local": [*report, glob, "--format", "json", *extra],
        "dask": [*report, glob, "--format", "json", "--scheduler", "local:2", *extra],
    }
    runs: dict[str, list[Usage]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            runs[name].append(run_tree(cmd, out_dir / f"report_{name}.json"))
    show_usage("(a) report, local engine", runs["local"])
    show_usage("(b) report --scheduler local:2 (LocalCluster)", runs["dask"])
    ratio = statistics.median(u.cpu for u in runs["dask"]) / statistics.median(
        u.cpu for u in runs["local"]
    )
    wall = statistics.median(u.wall for u in runs["dask"]) / statistics.median(
        u.wall for u in runs["local"]
    )
    print(f"ratio (b) / (a): {wall:.2f}x wall, {ratio:.2f}x CPU-s")
    want = json.loads((out_dir / "report_local.json").read_text())
    got = json.loads((out_dir / "report_dask.json").read_text())
    engines = (want["settings"]["engine"], got["settings"]["engine"])
    fanouts = (want["settings"].get("merge_fanout"), got["settings"].get("merge_fanout"))
    print(
        f"settings.engine: (a) {engines[0]!r}, (b) {engines[1]!r}; "
        f"settings.merge_fanout: (a) {fanouts[0]!r}, (b) {fanouts[1]!r}"
    )
    flat_want = flatten(want)
    show_agreement("(b) vs (a)", agreement(flatten(got), flat_want))
    if not args.no_profiles:
        bench_profiles(report, shards, rows, out_dir, flat_want)
    sys.stdout.flush()
