"""lc.analyze(..., executor=EX): the passes as tasks on any concurrent.futures.Executor (#19).

Each segment of a pass is one task returning its accumulator's pickle-free state; the
driver merges the states in segment order, as the local scheduler does, so every figure
agrees with lc.analyze to rounding (1e-12 relative) and the sample (its row ids, hence the
top Mahalanobis rows) is identical.
"""

from __future__ import annotations

import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.errors import InputError

IGNORED = {".created_at", ".settings.engine"}
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


def _assert_same_report(got: lc.Report, want: lc.Report) -> None:
    g, w = _flat(got.to_dict()), _flat(want.to_dict())
    assert sorted(g) == sorted(w)
    for key, wv in w.items():
        if key in IGNORED:
            continue
        gv = g[key]
        if isinstance(wv, float) and isinstance(gv, float) and not math.isclose(wv, gv):
            assert math.isclose(gv, wv, rel_tol=1e-12, abs_tol=1e-12), (key, gv, wv)
        else:
            assert gv == wv, (key, gv, wv)


@pytest.fixture(scope="module")
def conv_file(tmp_path_factory):
    # conv latents (the spatial accumulators ride in pass 2), with a NaN to leave out
    x = np.random.default_rng(19).standard_normal((300, 4, 6, 6)).astype(np.float32)
    x[:, 1] += 0.3 * x[:, 0]
    x[7, 2, 3, 3] = np.nan
    path = tmp_path_factory.mktemp("exec") / "z.npy"
    np.save(path, x)
    return path


@pytest.mark.slow
def test_issue_19_process_pool_executor_matches_local(conv_file):
    want = lc.analyze(conv_file, chunk_rows=1000, seed=4)
    assert want.settings.engine == "local"
    for workers in (1, 2):
        with ProcessPoolExecutor(workers) as ex:
            got = lc.analyze(conv_file, chunk_rows=1000, seed=4, executor=ex)
        assert got.settings.engine == "executor:ProcessPoolExecutor"
        _assert_same_report(got, want)
        assert got.to_dict()["joint"] == want.to_dict()["joint"]  # top rows: same ids


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


@pytest.mark.slow
def test_issue_19_dask_local_cluster_matches_local(conv_file):
    distributed = pytest.importorskip("distributed")
    want = lc.analyze(conv_file, chunk_rows=1000, seed=4)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = lc.analyze(conv_file, chunk_rows=1000, seed=4, executor=client.get_executor())
    assert got.settings.engine == "dask"
    _assert_same_report(got, want)


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
