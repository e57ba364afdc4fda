"""Issue 20, output targets: -o onto devices, FIFOs, full disks, closed stdout, odd names.

Nothing here writes to the machine's own /dev/null, /dev/full or /dev/stdout: device nodes
are made in tmp_path (as root), and in-process fd paths go through /proc/self/fd, where no
file can be created or renamed even by broken code.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentcheck.cli import cli
from latentcheck.io import output as _output


@pytest.fixture
def npy(latents_file):
    x = np.random.default_rng(0).standard_normal((300, 3))
    return latents_file(x, name="z.npy")


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".latentcheck-")]


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _mknod(path: Path, major: int, minor: int) -> None:
    """Make a character device node of our own (root only), or skip."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")


def test_issue_20_fifo_output_is_written_through_not_replaced(runner, npy, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)  # never blocks the test run
    reader.start()
    res = runner.invoke(cli, ["report", str(npy), "--format", "json", "-o", str(fifo)])
    reader.join(timeout=30)
    assert res.exit_code == 0, res.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got[0])["input"]["n_dims"] == 3
    assert _temps(tmp_path) == []


def test_issue_20_char_device_and_symlink_to_it_stay_devices(runner, npy, tmp_path):
    null = tmp_path / "null"
    _mknod(null, 1, 3)  # a /dev/null of our own
    link = tmp_path / "link"
    link.symlink_to(null)
    for target in (null, link):
        res = runner.invoke(cli, ["report", str(npy), "-o", str(target)])
        assert res.exit_code == 0, res.stderr
        assert stat.S_ISCHR(os.stat(null).st_mode)
        assert link.is_symlink()
    assert _temps(tmp_path) == []


def test_issue_20_full_device_is_exit_2_one_line(runner, npy, tmp_path):
    full = tmp_path / "full"
    _mknod(full, 1, 7)  # a /dev/full of our own: every write is ENOSPC
    res = runner.invoke(cli, ["report", str(npy), "-o", str(full)])
    assert res.exit_code == 2
    assert "No space left on device" in _one_line(res.stderr)
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_issue_20_proc_fd_path_writes_to_that_descriptor(capfd):
    _output.write_output("hello\n", "/proc/self/fd/1")
    _output.write_output("world\n", "/dev/fd/2")
    out, err = capfd.readouterr()
    assert out == "hello\n" and err == "world\n"


def test_issue_20_symlink_to_regular_file_is_kept(runner, npy, tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    res = runner.invoke(cli, ["report", str(npy), "--format", "json", "-o", str(link)])
    assert res.exit_code == 0, res.stderr
    assert link.is_symlink()
    assert json.loads(real.read_text())["input"]["n_dims"] == 3
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the file keeps its mode


@pytest.mark.parametrize("bad", ["", "DIR", "missing/r.json"])
def test_issue_20_bad_output_names_are_usage_errors_before_any_work(runner, npy, tmp_path, bad):
    (tmp_path / "DIR").mkdir()
    target = str(tmp_path / bad) if bad else ""
    start = time.perf_counter()
    res = runner.invoke(cli, ["report", str(npy), "-o", target])
    assert res.exit_code == 2
    line = _one_line(res.stderr)
    assert "-o" in line and "report --help" in line
    assert time.perf_counter() - start < 2.0  # refused before the analysis
    assert _temps(tmp_path) == [] and not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("mkstemp", errno.EACCES),
        ("mkstemp", errno.EROFS),
        ("write", errno.ENOSPC),
        ("write", errno.EFBIG),
        ("replace", errno.ENOENT),
        ("replace", errno.EROFS),
    ],
)
def test_issue_20_os_errors_while_writing_are_exit_2_and_leave_no_temp(
    runner, npy, tmp_path, monkeypatch, where, code
):
    out = tmp_path / "r.txt"

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if where == "mkstemp":
        monkeypatch.setattr(_output.tempfile, "mkstemp", fail)
    elif where == "write":
        monkeypatch.setattr(_output.os, "write", fail)
    else:
        monkeypatch.setattr(_output.os, "replace", fail)
    res = runner.invoke(cli, ["report", str(npy), "-o", str(out)])
    assert res.exit_code == 2
    assert _one_line(res.stderr) == f"Error: Cannot write {out}: {os.strerror(code)}"
    assert _temps(tmp_path) == [] and not out.exists()


def test_issue_20_read_only_directory_is_exit_2(runner, npy, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = runner.invoke(cli, ["report", str(npy), "-o", str(ro / "r.txt")])
    finally:
        ro.chmod(0o700)
    assert res.exit_code == 2 and "Permission denied" in _one_line(res.stderr)


def test_issue_20_stale_temp_files_of_killed_runs_are_removed(runner, npy, tmp_path):
    old = time.time() - 3600
    dead = tmp_path / ".latentcheck-2147483646-abc123.tmp"  # no such pid (above pid_max)
    fresh = tmp_path / ".latentcheck-2147483645-def456.tmp"  # may still be renamed
    alive = tmp_path / f".latentcheck-{os.getppid()}-ghi789.tmp"
    foreign = tmp_path / ".latentcheck-notes.txt"  # not ours: never touched
    for p in (dead, fresh, alive, foreign):
        p.write_text("partial")
    for p in (dead, alive, foreign):
        os.utime(p, (old, old))
    res = runner.invoke(cli, ["report", str(npy), "-o", str(tmp_path / "r.txt")])
    assert res.exit_code == 0, res.stderr
    assert sorted(_temps(tmp_path)) == sorted(p.name for p in (fresh, alive, foreign))


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "latentcheck", *args], capture_output=False, **kwargs
    )


@pytest.mark.slow
def test_issue_20_closed_or_full_stdout_is_exit_2(npy, tmp_path):
    full = tmp_path / "full"
    _mknod(full, 1, 7)
    with open(full, "wb") as out:
        res = _run(["report", str(npy)], stdout=out, stderr=subprocess.PIPE, text=True)
    assert res.returncode == 2
    assert "stdout: No space left on device" in _one_line(res.stderr)
    res = _run(
        ["report", str(npy)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),  # `>&-`
    )
    assert res.returncode == 2
    assert "stdout is closed" in _one_line(res.stderr)


def test_issue_20_non_utf8_names_work_in_every_format_and_are_escaped(runner, tmp_path):
    raw = os.fsencode(tmp_path) + b"/a\xff\x1b[31m`b`|x.npy"
    name = os.fsdecode(raw)
    np.save(name, np.random.default_rng(1).standard_normal((200, 2)))
    for fmt in ("text", "markdown", "json"):
        out = tmp_path / f"r.{fmt}"
        res = runner.invoke(cli, ["report", name, "--format", fmt, "-o", str(out)])
        assert res.exit_code == 0, res.stderr
        data = out.read_bytes()
        text = data.decode("utf-8")  # valid UTF-8
        assert b"\x1b" not in data
        if fmt == "json":
            assert json.loads(text)["input"]["sources"] == [name]  # exact, escaped by JSON
        else:
            assert "a\\xff\\x1b[31m`b`|x.npy" in text
    md = (tmp_path / "r.markdown").read_text()
    assert "``" + os.fsdecode(os.fsencode(tmp_path)) in md  # a fence longer than `b`
    res = runner.invoke(cli, ["report", name + ".missing"])
    assert res.exit_code == 2 and "\x1b" not in res.stderr and "\\xff" in res.stderr


def test_issue_20_md_code_survives_backticks_and_newlines():
    from latentcheck.render.markdownreport import md_code

    assert md_code("a.npy") == "`a.npy`"
    assert md_code("a`b") == "``a`b``"
    assert md_code("``x") == "``` ``x ```"
    assert "\n" not in md_code("a\nb")
