"""Issue 20, signals and workers: Ctrl-C, a killed parent, a file truncated while read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.engine.workers import PROCESS_MIN_VALUES, processes_available

pytestmark = pytest.mark.skipif(
    not processes_available() or not os.path.exists("/proc/self/task"),
    reason="forked workers and /proc are Linux only",
)

# the run's streaming passes never finish: every worker (and the caller) sleeps in its job
_SCRIPT = """
import sys, time
import latentcheck.engine.segments as p
def busy(*args, **kwargs):
    time.sleep(120)
p.run_segment = busy
sys.argv = ["latentcheck", "report", sys.argv[1], "--threads", "3", "--no-progress",
            "-o", sys.argv[2]]
from latentcheck.__main__ import main
main()
"""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _kill_leftovers(tmp_path: Path) -> None:
    """SIGKILL every process still running the script on this test's files."""
    marker = os.fsencode(tmp_path)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _start(tmp_path: Path) -> tuple[subprocess.Popen, list[int], Path]:
    n_dims = 16
    x = np.zeros((PROCESS_MIN_VALUES // n_dims + 1000, n_dims), dtype=np.float32)
    src = tmp_path / "z.npy"
    np.save(src, x)
    out = tmp_path / "r.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(src), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(kids := _children(proc.pid)) < 2:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"no workers started: {proc.communicate()}")
        time.sleep(0.05)
    time.sleep(0.3)  # into their job
    return proc, kids, out


@pytest.mark.slow
def test_issue_20_ctrl_c_exits_130_one_line_no_worker_no_output(tmp_path):
    proc, kids, out = _start(tmp_path)
    os.kill(proc.pid, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=30)
        alive = [k for k in kids if _running(k)]  # before any cleanup
    finally:
        _kill_leftovers(tmp_path)
    assert proc.returncode == 130
    # click ends the terminal's "^C" with a newline first
    assert stderr.strip() == "latentcheck: interrupted" and stdout == ""
    assert alive == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npy"]
    assert not out.exists()


@pytest.mark.slow
def test_issue_20_workers_exit_when_the_parent_is_killed(tmp_path):
    proc, kids, _ = _start(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(_running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [k for k in kids if _running(k)]
    _kill_leftovers(tmp_path)  # leave nothing behind even when the test fails
    assert alive == []


@pytest.mark.parametrize("order", ["C", "F"])
def test_issue_20_file_truncated_while_read_is_a_format_error(tmp_path, order):
    x = np.asfortranarray(np.ones((4000, 8))) if order == "F" else np.ones((4000, 8))
    path = tmp_path / "z.npy"
    np.save(path, x)
    source = lc.open_latents(path)
    try:
        os.truncate(path, 1024)
        with pytest.raises(lc.FormatError, match=r"truncated|short read|changed"):
            source.read_items(2000, 4000)
    finally:
        source.close()
