"""Issue 20, resources: shards hold no file descriptor each; thousands of shards work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.io.latents import iter_blocks

linux_fds = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def _shards(tmp_path, n, rows=8, fortran=False):
    rng = np.random.default_rng(0)
    parts = []
    for i in range(n):
        x = rng.standard_normal((rows, 4)).astype(np.float32)
        parts.append(x)
        np.save(tmp_path / f"s{i:05d}.npy", np.asfortranarray(x) if fortran else x)
    return np.concatenate(parts)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@linux_fds
def test_issue_20_open_shards_hold_no_descriptor_each(tmp_path):
    x = _shards(tmp_path, 300)
    before = _open_fds()
    src = lc.open_latents(str(tmp_path / "*.npy"))
    try:
        assert _open_fds() - before <= 2
        got = np.concatenate([b for _, b in iter_blocks(src, 64)])
        assert _open_fds() - before <= 2
    finally:
        src.close()
    np.testing.assert_array_equal(got, x)


@linux_fds
@pytest.mark.slow
def test_issue_20_600_shards_under_a_low_descriptor_limit(tmp_path):
    import resource

    x = _shards(tmp_path, 600)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "latentcheck",
            "report",
            str(tmp_path / "*.npy"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["input"]["n_samples"] == x.shape[0]
    np.testing.assert_allclose(
        [d["mean"] for d in rep["dims"]], x.astype(np.float64).mean(axis=0), rtol=0, atol=1e-12
    )
