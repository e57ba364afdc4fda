"""The CLI is a thin layer: exit codes, stdout/stderr, files, and the API mapping."""

from __future__ import annotations

import json
import os
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
    res = runner.invoke(
        cli, ["report", str(path), "--format", "json", "--flatten", "--allow-few-rows"]
    )
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


# ---------------------------------------------------------------------------------------
# issue 16: gates on the verdict, and the mistakes caught before the work
# ---------------------------------------------------------------------------------------


@pytest.fixture
def dead_npy(latents_file):
    z = np.random.default_rng(5).standard_normal((800, 4)).astype(np.float32)
    z[:, 2] = 0.0
    return latents_file(z, name="dead.npy")


def test_issue_16_fail_on_warn_names_codes_and_dims(runner, dead_npy, npy):
    res = runner.invoke(cli, ["report", str(dead_npy), "--fail-on-warn"])
    assert res.exit_code == 1
    assert "latentcheck: --fail-on-warn: dead_dims (dims 2):" in res.stderr
    assert "VERDICT" in res.stdout  # the report is still written
    clean = np.random.default_rng(6).standard_normal((3000, 3)).astype(np.float32)
    path = npy.parent / "clean.npy"
    np.save(path, clean)
    res = runner.invoke(cli, ["report", str(path), "--fail-on-warn"])
    assert res.exit_code == 0, res.stderr


def test_issue_16_fail_on_finding_code_prints_the_value(runner, dead_npy):
    res = runner.invoke(
        cli, ["report", str(dead_npy), "--fail-on", "summary.findings.*.code == dead_dims"]
    )
    assert res.exit_code == 1
    assert "summary.findings.*.code == dead_dims (summary.findings.0.code = dead_dims)" in (
        res.stderr
    )
    res = runner.invoke(
        cli, ["report", str(dead_npy), "--fail-on", "summary.findings.*.code == 'heavy_tails'"]
    )
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(cli, ["report", str(dead_npy), "--fail-on", "max(dims.*.std) > 0.5"])
    assert res.exit_code == 1 and "(max(dims.*.std) = 1.0" in res.stderr


def test_issue_16_gate_unknown_path_suggests_the_nearest(runner, dead_npy):
    res = runner.invoke(
        cli, ["report", str(dead_npy), "--fail-on", "summary.finding.*.code == dead_dims"]
    )
    assert res.exit_code == 2 and res.stdout == ""
    assert "did you mean summary.findings?" in res.stderr
    res = runner.invoke(cli, ["report", str(dead_npy), "--fail-on", "dims.*.kl_marginl > 1"])
    assert res.exit_code == 2 and "did you mean dims.*.kl_marginal?" in res.stderr


def test_issue_16_gate_text_values_take_only_equality():
    from latentcheck.gates import check

    d = {"summary": {"findings": [{"code": "heavy_tails"}, {"code": "gaussian"}]}}
    assert check("summary.findings.*.code != gaussian", d) == (
        True,
        "summary.findings.0.code = heavy_tails",
    )
    assert check("summary.findings.*.code == dead_dims", d)[0] is False
    with pytest.raises(lc.InputError, match="text values take only == or !="):
        check("summary.findings.*.code > dead_dims", d)
    with pytest.raises(lc.InputError, match="is not text"):
        check("summary.n == x", {"summary": {"n": 3}})


def test_issue_16_format_from_the_output_suffix(runner, npy, tmp_path):
    for suffix, check in [
        (".json", lambda t: json.loads(t)["schema_version"]),
        (".md", lambda t: t.startswith("### latentcheck report")),
        (".txt", lambda t: "VERDICT" in t),
    ]:
        out = tmp_path / f"r{suffix}"
        res = runner.invoke(cli, ["report", str(npy), "-o", str(out)])
        assert res.exit_code == 0, res.stderr
        assert check(out.read_text(encoding="utf-8")), suffix
    out = tmp_path / "forced.json"
    res = runner.invoke(cli, ["report", str(npy), "-o", str(out), "--format", "text"])
    assert res.exit_code == 0 and "VERDICT" in out.read_text(encoding="utf-8")


def test_issue_16_mistakes_fail_before_the_analysis(runner, npy, tmp_path, monkeypatch):
    import latentcheck.cli as cli_module
    from latentcheck.analysis import api as analysis

    def boom(*a, **k):
        raise AssertionError("the analysis ran")

    monkeypatch.setattr(analysis, "analyze", boom)
    res = runner.invoke(cli, ["report", str(npy), "-o", str(tmp_path / "no" / "r.json")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = runner.invoke(cli, ["compare", str(npy), str(npy), "-o", str(tmp_path / "c.html")])
    assert res.exit_code == 2 and "not comparisons" in res.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    res = runner.invoke(cli, ["report", str(npy), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "needs matplotlib" in res.stderr
    monkeypatch.delitem(sys.modules, "matplotlib")
    monkeypatch.setattr(cli_module, "stdout_is_terminal", lambda: True)
    res = runner.invoke(cli, ["report", str(npy), "--format", "html"])
    assert res.exit_code == 2 and "-o report.html" in res.stderr
    assert not list(tmp_path.glob("*.html"))


def test_issue_16_quiet_prints_the_verdict_alone(runner, dead_npy):
    res = runner.invoke(cli, ["report", str(dead_npy), "-q"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "VERDICT" and "SUMMARY" not in res.stdout
    assert any("[dead_dims]" in line for line in lines)


def test_issue_16_text_width_follows_the_terminal(runner, npy, monkeypatch):
    import shutil

    import latentcheck.cli as cli_module

    monkeypatch.setattr(cli_module, "stdout_is_terminal", lambda: True)
    monkeypatch.setattr(
        shutil, "get_terminal_size", lambda fallback=(100, 24): os.terminal_size((72, 24))
    )
    res = runner.invoke(cli, ["report", str(npy)])
    assert res.exit_code == 0, res.stderr
    assert max(len(line) for line in res.stdout.splitlines()) <= 72
    res = runner.invoke(cli, ["report", str(npy), "--width", "120"])
    assert max(len(line) for line in res.stdout.splitlines()) > 72


def test_issue_16_lc_gates_reachable_after_import():
    code = "import latentcheck as lc; print(lc.gates.evaluate.__name__, lc.verdict.judge.__name__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.split() == ["evaluate", "judge"]


@pytest.mark.slow
def test_issue_16_compare_help_states_real_defaults_and_relation_is_said_once(runner, latents_file):
    res = runner.invoke(cli, ["compare", "--help"])
    flat = " ".join(res.stdout.split())
    assert "per-dimension tests. [default: 20000]" in flat
    assert "--relation [same|unrelated]" in flat
    rng = np.random.default_rng(3)
    a = rng.standard_normal((500, 4)) * [1.0, 2.0, 4.0, 8.0]
    b = rng.standard_normal((500, 4)) * [8.0, 1.0, 2.0, 4.0]  # the same scales, permuted
    pa, pb = latents_file(a, name="a.npy"), latents_file(b, name="b.npy")
    pc = latents_file(b[:, ::-1].copy(), name="c.npy")
    args = ["compare", str(pa), str(pb), str(pc), "--format", "json", "--n-permutations", "0"]
    same = json.loads(runner.invoke(cli, args).stdout)
    other = json.loads(runner.invoke(cli, [*args, "--relation", "unrelated"]).stdout)
    assert same["settings"]["relation"] == "same"
    assert other["settings"]["relation_note"].startswith("The inputs are separately trained")
    note = "The dimensions may not correspond"
    texts = [f["text"] for c in other["comparisons"] for f in c["findings"]]
    assert not any(t.startswith(note) for t in texts)
    for c in same["comparisons"]:
        assert all(f["code"] for f in c["findings"])
        moved = [f for f in c["findings"] if f["code"] == "dims_moved"]
        assert moved and moved[0]["dims"] == c["moved_dims"]
    gate = ["--fail-on", "comparisons.*.findings.*.code == dims_moved"]
    res = runner.invoke(cli, [*args, *gate])
    assert res.exit_code == 1 and "code = dims_moved" in res.stderr
    same_texts = [f["text"] for c in same["comparisons"] for f in c["findings"]]
    hints = [t for t in same_texts if t.startswith(note)]
    assert hints and all(t.endswith("pass --relation unrelated)") for t in hints)
    res = runner.invoke(
        cli,
        ["compare", str(pa), str(pb), str(pc), "--relation", "unrelated", "--n-permutations", "0"],
    )
    assert res.stdout.count("separately trained models") == 1
    assert res.stdout.count(note) == 0
