"""The CLI is a thin layer: exit codes, stdout/stderr, files, and the API mapping."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli


def _strip(d: dict) -> dict:
    d = dict(d)
    d.pop("created_at")
    return d


@pytest.fixture
def npy(latents_file):
    x = np.random.default_rng(0).standard_normal((600, 3)).astype(np.float32)
    x[:, 1] = x[:, 1] ** 3  # heavy tails
    return latents_file(x, name="z.npy")


def test_json_equals_analyze_to_dict(runner, npy):
    res = runner.invoke(cli, ["report", str(npy), "--format", "json", "--seed", "3"])
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    assert next(iter(got)) == "schema_version"
    expected = lc.analyze([str(npy)], seed=3).to_dict()
    assert _strip(got) == _strip(json.loads(json.dumps(expected)))


def test_text_report_fits_100_columns(runner, npy):
    res = runner.invoke(cli, ["report", str(npy)])
    assert res.exit_code == 0
    assert res.stdout.startswith("latentcheck")
    assert "VERDICT" in res.stdout and "PER DIMENSION" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 100
    narrow = runner.invoke(cli, ["report", str(npy), "--width", "80"])
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_markdown_output(runner, npy):
    res = runner.invoke(cli, ["report", str(npy), "--format", "markdown"])
    assert res.exit_code == 0
    assert "| dim |" in res.stdout


def test_output_file_written_and_dash_is_stdout(runner, npy, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(cli, ["report", str(npy), "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads(out.read_text())["input"]["n_dims"] == 3
    res = runner.invoke(cli, ["report", str(npy), "--format", "json", "-o", "-"])
    assert json.loads(res.stdout)["input"]["n_samples"] == 600


def test_fail_on_exit_codes(runner, npy):
    res = runner.invoke(cli, ["report", str(npy), "--fail-on", "summary.outlier_rate.4 > 0.0001"])
    assert res.exit_code == 1
    assert "--fail-on condition holds: summary.outlier_rate.4 > 0.0001" in res.stderr
    assert "VERDICT" in res.stdout  # the report is still written
    res = runner.invoke(cli, ["report", str(npy), "--fail-on", "max(dims.*.kl_marginal) > 100"])
    assert res.exit_code == 0
    res = runner.invoke(cli, ["report", str(npy), "--fail-on", "dims.*.excess_kurtosis > 5"])
    assert res.exit_code == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.npy"], "File not found: missing.npy"),
        (["{npy}", "--fail-on", "summary.nope > 1"], "The report has no key 'nope' at summary"),
        (["{npy}", "--fail-on", "banana"], "Cannot read --fail-on 'banana'"),
        (["{npy}", "--test-samples", "2"], "`test_samples` must be at least 3"),
    ],
)
def test_bad_input_exit_2_one_line_no_traceback(runner, npy, args, message):
    args = [a.format(npy=npy) for a in args]
    res = runner.invoke(cli, ["report", *args])
    assert res.exit_code == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""


def test_no_half_written_file_on_error(runner, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out.json"
    res = runner.invoke(cli, ["report", str(bad), "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_debug_shows_the_exception(runner):
    res = runner.invoke(cli, ["report", "missing.npy", "--debug"])
    assert res.exit_code == 1 and isinstance(res.exception, lc.FormatError)


def test_usage_errors(runner):
    res = runner.invoke(cli, ["report"])
    assert res.exit_code == 2 and "Give at least one input file" in res.stderr
    res = runner.invoke(cli, ["report", "x.npy", "--format", "yaml"])
    assert res.exit_code == 2


def test_help_and_version(runner):
    for args in (["-h"], ["report", "--help"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0 and "Usage" in res.stdout
    res = runner.invoke(cli, ["--version"])
    assert res.exit_code == 0 and lc.__version__ in res.stdout


def test_python_dash_m_runs_the_cli(npy):
    res = subprocess.run(
        [sys.executable, "-m", "latentcheck", "report", str(npy), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["input"]["n_dims"] == 3
    bad = subprocess.run(
        [sys.executable, "-m", "latentcheck", "report", "nope.npy"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "Error: File not found: nope.npy"


def test_importing_the_package_leaves_numpy_to_the_cli_entry():
    # the console script sets OPENBLAS_NUM_THREADS before numpy loads, so the package
    # itself must not import numpy; its public names load on first use
    code = (
        "import sys, latentcheck; assert 'numpy' not in sys.modules; "
        "from latentcheck import analyze, Report; assert 'numpy' in sys.modules; "
        "print(latentcheck.__version__)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == lc.__version__


def test_cli_output_survives_the_fast_exit(tmp_path, npy, runner):
    # the entry point ends the process with os._exit: text on stdout and the -o file
    # must be complete, and the exit codes those of click
    out = tmp_path / "r.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "latentcheck",
            "report",
            str(npy),
            "-o",
            str(out),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["input"]["n_dims"] == 3
    text = subprocess.run(
        [sys.executable, "-m", "latentcheck", "report", str(npy)], capture_output=True, text=True
    )
    assert text.returncode == 0
    assert text.stdout == runner.invoke(cli, ["report", str(npy)]).stdout
    usage = subprocess.run(
        [sys.executable, "-m", "latentcheck", "report", str(npy), "--format", "xml"],
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2 and "Invalid value" in usage.stderr


def test_conv_options(runner, latents_file):
    x = np.random.default_rng(1).standard_normal((10, 3, 4, 4)).astype(np.float32)
    path = latents_file(x, name="conv.npy")
    res = runner.invoke(cli, ["report", str(path), "--format", "json"])
    assert json.loads(res.stdout)["input"]["n_dims"] == 3
    res = runner.invoke(cli, ["report", str(path), "--format", "json", "--flatten"])
    assert json.loads(res.stdout)["input"]["n_dims"] == 48
    res = runner.invoke(cli, ["report", str(path), "--format", "json", "--channel-axis", "3"])
    assert json.loads(res.stdout)["input"]["n_dims"] == 4


def test_ctrl_c_before_click_takes_over_exits_130_without_a_traceback():
    # an interrupt while the entry point still imports click and the package reaches no
    # click handler; the entry point answers as the CLI does (one line, 128 + SIGINT)
    code = (
        "import latentcheck.cli as c, latentcheck.__main__ as m\n"
        "def interrupted():\n"
        "    raise KeyboardInterrupt\n"
        "c.main = interrupted\n"
        "m.main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 130
    assert res.stderr == "latentcheck: interrupted\n"
