"""lc.analyze(..., executor=EX): the passes as tasks on any concurrent.futures.Executor (#19).

Each segment of a pass is one task returning its accumulator's pickle-free state; the
driver merges the states along a tree of fixed shape (runs of `merge_fanout` consecutive
segments, level by level), as the local scheduler does. So every figure agrees with
lc.analyze to rounding (1e-12 relative) whatever the fan-out, the sample (its row ids,
hence the top Mahalanobis rows) is identical, and with the same fan-out the report is the
same to the last bit whatever the engine, the number of workers and the order in which
the tasks finish.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import multiprocessing
import socket
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.engine.cluster import local_cluster_options
from latentcheck.engine.executor import use_executor
from latentcheck.engine.segments import MERGE_FANOUT, MergeTree, merge_tree
from latentcheck.errors import InputError

IGNORED = {".created_at", ".settings.engine", ".settings.merge_fanout"}
FANOUTS = (2, 3, 8, "linear")
WORKERS = (1, 2, 4)
# small, and cut fine: 12 segments a pass, so that every fan-out builds a tree of
# two levels or more; a sample of 1000 rows, a subset whose ids must match
OPTS = {"seed": 4, "sample_size": 1000, "test_samples": 300, "mcd_samples": 300}
CHUNK_ROWS = {"conv": 216, "flat": 125}
# the conv file's one NaN row is left out, with a warning each run
pytestmark = pytest.mark.filterwarnings("ignore:1 of 10800 rows hold NaN")


def _flat(d: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{path}.{k}"))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_flat(v, f"{path}[{i}]"))
    else:
        out[path] = d
    return out


def _assert_same_report(got: lc.Report, want: lc.Report, ignored: set[str] = IGNORED) -> None:
    g, w = _flat(got.to_dict()), _flat(want.to_dict())
    assert sorted(g) == sorted(w)
    for key, wv in w.items():
        if key in ignored:
            continue
        gv = g[key]
        if isinstance(wv, float) and isinstance(gv, float):
            # merge orders differ in rounding only; abs_tol for figures that are 0 up to it
            assert math.isclose(gv, wv, rel_tol=1e-12, abs_tol=1e-12), (key, gv, wv)
        else:
            assert gv == wv, (key, gv, wv)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A conv (N, C, H, W) file with a NaN row and a 2-D file, by name."""
    where = tmp_path_factory.mktemp("exec")
    # conv latents (the spatial accumulators ride in pass 2), with a NaN to leave out
    x = np.random.default_rng(19).standard_normal((300, 4, 6, 6)).astype(np.float32)
    x[:, 1] += 0.3 * x[:, 0]
    x[7, 2, 3, 3] = np.nan
    rng = np.random.default_rng(20)
    y = rng.standard_normal((6000, 5)) @ (np.eye(5) + 0.3)  # correlated
    y[:, 0] = 2.0 + rng.standard_t(5, 6000)  # heavy-tailed, off centre
    out = {"conv": where / "conv.npy", "flat": where / "flat.npy"}
    np.save(out["conv"], x)
    np.save(out["flat"], y)
    return out


@pytest.fixture(scope="module")
def conv_file(files):
    return files["conv"]


def _analysis(path: Any, chunk_rows: int, executor: Executor | None, fanout: Any) -> lc.Analysis:
    """Analyse `path` on `executor` with merge fan-out `fanout`; the report and its sample."""
    with use_executor(executor, merge_fanout=fanout):
        return lc.analyze_with_sample(path, chunk_rows=chunk_rows, **OPTS)


@pytest.fixture(scope="module")
def local(files):
    """The local engine's analyses of the files, at the default fan-out."""
    return {k: _analysis(p, CHUNK_ROWS[k], None, MERGE_FANOUT) for k, p in files.items()}


def _assert_matches_local(got: lc.Analysis, want: lc.Analysis, engine: str, fanout: Any) -> None:
    """The same report to 1e-12, the same sample rows (ids and values), engine and fan-out named."""
    assert got.report.settings.engine == engine
    assert got.report.settings.merge_fanout == fanout
    _assert_same_report(got.report, want.report)
    assert _top_ids(got.report) == _top_ids(want.report)
    np.testing.assert_array_equal(got.row_ids, want.row_ids)
    np.testing.assert_array_equal(got.sample, want.sample)


def _top_ids(rep: lc.Report) -> list[Any]:
    """The row ids of the largest Mahalanobis distances (their d² agree to rounding)."""
    return [r["row"] for r in rep.to_dict()["joint"]["mahalanobis"]["top_rows"]]


class _Leaf:
    """A stand-in accumulator whose merge records the tree: "(a+b)"."""

    def __init__(self, label: str) -> None:
        self.label = label

    def merge(self, other: _Leaf) -> _Leaf:
        return _Leaf(f"({self.label}+{other.label})")


def _expected_tree(labels: list[str], fanout: Any) -> str:
    """The tree of the module docstring of latentcheck.engine.segments, written level by level."""
    width = len(labels) if fanout == "linear" else fanout

    def fold(run: list[str]) -> str:
        out = run[0]
        for label in run[1:]:
            out = f"({out}+{label})"
        return out

    level = labels
    while len(level) > 1:
        level = [fold(level[i : i + width]) for i in range(0, len(level), width)]
    return level[0]


def test_issue_19_merge_tree_has_a_fixed_shape():
    # ten segments, fan-out 3: runs of three, then of three again, then the root
    parts = [(i, _Leaf(str(i))) for i in range(10)]
    assert merge_tree(parts, 3).label == "(((((0+1)+2)+((3+4)+5))+((6+7)+8))+9)"
    assert merge_tree(parts, "linear").label == _expected_tree([str(i) for i in range(10)], 10)
    order = np.random.default_rng(0)
    for n, fanout in itertools.product(range(1, 70), (2, 3, 4, 8, "linear")):
        labels = [str(i) for i in range(n)]
        want = _expected_tree(labels, fanout)
        shuffled = [(i, _Leaf(labels[i])) for i in order.permutation(n)]
        assert merge_tree(shuffled, fanout).label == want, (n, fanout)  # by index, not arrival
        tree = MergeTree(fanout)  # fed one by one, as the driver does
        for label in labels:
            tree.add(_Leaf(label))
        assert tree.result().label == want, (n, fanout)


@pytest.mark.parametrize("bad", [1, 0, -2, True, 2.5, "tree", None])
def test_issue_19_merge_fanout_must_be_two_or_more_or_linear(bad):
    with pytest.raises(InputError, match=r"merge_fanout.*at least 2 or 'linear'"):
        lc.analyze(np.zeros((100, 2)), merge_fanout=bad)


def test_issue_19_merge_fanout_recorded_only_for_the_engines_passes():
    z = np.random.default_rng(5).standard_normal((500, 3))
    assert lc.analyze(z, merge_fanout="linear").settings.merge_fanout == "linear"
    assert lc.Report.from_dict(lc.analyze(z).to_dict()).settings.merge_fanout == MERGE_FANOUT
    stream = lc.Stream(seed=0)
    stream.update(z)
    assert stream.report().settings.merge_fanout is None  # merged as its caller merges


class _Shuffling(ThreadPoolExecutor):
    """A thread pool whose tasks wait a seeded random time first: they finish out of order."""

    def __init__(self, workers: int, seed: int) -> None:
        super().__init__(workers)
        self._rng = np.random.default_rng(seed)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        delay = float(self._rng.uniform(0.0, 0.01))

        def late() -> Any:
            time.sleep(delay)
            return fn(*args, **kwargs)

        return super().submit(late)


@pytest.mark.slow
def test_issue_19_same_fanout_same_bits_whatever_engine_and_order(files):
    # the result is a function of the inputs and the settings only: with the same fan-out
    # the local engine (1 or 3 threads) and an executor whose tasks finish in a shuffled
    # order give the same report to the last bit
    path, rows = files["flat"], CHUNK_ROWS["flat"]
    ignored = {".created_at", ".settings.engine", ".settings.threads"}
    want = lc.analyze(path, chunk_rows=rows, merge_fanout=3, threads=1, **OPTS)
    assert want.settings.merge_fanout == 3
    _assert_same_report(
        lc.analyze(path, chunk_rows=rows, merge_fanout=3, threads=3, **OPTS), want, ignored
    )
    for seed in (1, 2):
        with _Shuffling(3, seed) as ex:
            got = lc.analyze(path, chunk_rows=rows, merge_fanout=3, executor=ex, **OPTS)
        assert got.to_dict()["settings"]["merge_fanout"] == 3
        g, w = _flat(got.to_dict()), _flat(want.to_dict())
        assert {k: v for k, v in g.items() if k not in ignored} == {
            k: v for k, v in w.items() if k not in ignored
        }


@pytest.fixture(scope="module")
def process_pools():
    """Process pools of 1, 2 and 4 workers, forked by a fresh forkserver.

    Not forked from this process: it runs threads (OpenBLAS's, a pool's manager thread,
    Dask's), and from Python 3.12 on a fork of a multi-threaded process warns, an error
    here. The forkserver imports the engine once, so its forks start warm.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["latentcheck.engine.plan", "latentcheck.engine.executor"])
    pools = {n: ProcessPoolExecutor(n, mp_context=ctx) for n in WORKERS}
    try:
        yield pools
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["conv", "flat"])
def test_issue_19_process_pools_and_fanouts_match_local(name, files, local, process_pools):
    # 1, 2 and 4 worker processes x fan-outs 2, 3, 8 and linear, against the local engine
    for workers, fanout in itertools.product(WORKERS, FANOUTS):
        got = _analysis(files[name], CHUNK_ROWS[name], process_pools[workers], fanout)
        _assert_matches_local(got, local[name], "executor:ProcessPoolExecutor", fanout)


@pytest.mark.slow
def test_issue_19_thread_pool_executor_and_posterior_path():
    rng = np.random.default_rng(3)
    mu = rng.standard_normal((3000, 5))
    logvar = rng.normal(-1.0, 0.2, (3000, 5))
    want = lc.analyze(mu=mu, logvar=logvar, chunk_rows=256)
    with ThreadPoolExecutor(3) as ex:
        got = lc.analyze(mu=mu, logvar=logvar, chunk_rows=256, executor=ex)
    assert got.settings.engine == "executor:ThreadPoolExecutor"
    _assert_same_report(got, want)


def test_issue_19_executor_must_be_an_executor():
    with pytest.raises(InputError, match=r"concurrent\.futures\.Executor"):
        lc.analyze(np.zeros((100, 2)), executor="local:2")


@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    """One LocalCluster for the module, as ``--scheduler local:1`` makes it (see _scale).

    It starts beside any other Dask cluster on the machine (local_cluster_options: no port
    8787), in its own scratch directory rather than the shared /tmp/dask-scratch-space,
    with generous timeouts for a busy machine; the client closes first, then the cluster.
    """
    distributed = pytest.importorskip("distributed")
    options = local_cluster_options(1)
    options["local_directory"] = str(tmp_path_factory.mktemp("dask"))
    with (
        distributed.LocalCluster(**options) as cluster,
        distributed.Client(cluster, timeout="120s") as client,
    ):
        client.wait_for_workers(1, timeout=120)
        yield client


def _scale(client: Any, workers: int) -> None:
    """Resize the cluster to exactly `workers` worker processes (fail after 120 s)."""
    client.cluster.scale(workers)
    deadline = time.monotonic() + 120
    while len(client.scheduler_info(n_workers=-1)["workers"]) != workers:
        assert time.monotonic() < deadline, f"the LocalCluster did not reach {workers} workers"
        time.sleep(0.1)


#: Dask runs (workers, fan-out), in order of workers: every worker count at the default
#: fan-out, every fan-out at 4 workers. The fan-out acts on the driver alone, and the
#: full product runs on process pools above; a Dask run costs about a second.
DASK_RUNS = [(1, MERGE_FANOUT), (2, MERGE_FANOUT), *((4, f) for f in FANOUTS)]


@pytest.mark.slow
def test_issue_19_dask_local_cluster_and_fanouts_match_local(files, local, dask_client):
    # both files at each size of the cluster: it grows 1 -> 2 -> 4 once (a new worker
    # process imports numpy, scipy and latentcheck before its first task)
    for workers, fanout in DASK_RUNS:
        _scale(dask_client, workers)
        for name, path in files.items():
            got = _analysis(path, CHUNK_ROWS[name], dask_client.get_executor(), fanout)
            _assert_matches_local(got, local[name], "dask", fanout)


def test_issue_19_cli_scheduler_refuses_bad_specs(runner, conv_file, monkeypatch):
    from latentcheck.cli import cli

    res = runner.invoke(cli, ["report", str(conv_file), "--scheduler", "local:0"])
    assert res.exit_code == 2
    assert "positive number of worker processes" in res.stderr
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    res = runner.invoke(cli, ["report", str(conv_file), "--scheduler", "local:2"])
    assert res.exit_code == 2
    assert "pip install 'latentcheck[dask]'" in res.stderr


@pytest.mark.slow
def test_issue_19_cli_scheduler_local_matches_local(runner, tmp_path):
    pytest.importorskip("distributed")
    from latentcheck.cli import cli

    path = tmp_path / "z.npy"
    np.save(path, np.random.default_rng(5).standard_normal((4000, 3)).astype(np.float32))
    args = ["report", str(path), "--format", "json", "--seed", "1", "--chunk-rows", "500"]
    # another scheduler's HTTP server on port 8787 (a second test run, a user's cluster):
    # the local cluster took another port with a UserWarning, an error under -W error,
    # and failed to start (the LocalCluster tests that failed under load)
    with socket.socket() as other:
        with contextlib.suppress(OSError):  # taken already: the same situation
            other.bind(("127.0.0.1", 8787))
            other.listen()
        res = runner.invoke(cli, [*args, "--scheduler", "local:2"])
    assert res.exit_code == 0, res.stderr
    got = lc.Report.from_dict(json.loads(res.stdout))
    assert got.settings.engine == "dask"
    _assert_same_report(got, lc.analyze(str(path), seed=1, chunk_rows=500))


class _Counting(ThreadPoolExecutor):
    """A thread pool that counts the tasks submitted to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        type(self).submitted += 1
        return super().submit(*args, **kwargs)


@pytest.mark.slow
def test_issue_19_compare_runs_its_analyses_on_the_executor():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((1500, 3)), 1.1 * rng.standard_normal((1500, 3))
    want = lc.compare(a, b, chunk_rows=200, n_permutations=0)
    with _Counting(2) as ex:
        got = lc.compare(a, b, chunk_rows=200, n_permutations=0, executor=ex)
    assert _Counting.submitted > 4  # pass 1 and pass 2 of both inputs, by segment
    assert got.to_dict()["comparisons"] == want.to_dict()["comparisons"]


def test_issue_19_compare_passes_the_merge_fanout_on(monkeypatch):
    import latentcheck.engine.segments as segments

    widths: list[Any] = []
    real = segments.MergeTree.__init__

    def spy(self: Any, fanout: Any) -> None:
        widths.append(fanout)
        real(self, fanout)

    monkeypatch.setattr(segments.MergeTree, "__init__", spy)
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((800, 3)), rng.standard_normal((800, 3))
    lc.compare(a, b, chunk_rows=50, n_permutations=0, merge_fanout=3)
    assert len(widths) >= 4 and set(widths) == {3}  # both passes of both inputs
    with pytest.raises(InputError, match="merge_fanout"):
        lc.compare(a, b, merge_fanout=1)
