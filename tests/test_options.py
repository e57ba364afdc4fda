"""Options in one place (issue 17 stage 2): one Option per option, and nothing drifts from it.

The CLI flags, the keyword signatures and docstrings of ``analyze`` and ``compare``, and
the validation all come from ``latentcheck.options``; these tests check each against it,
and that ``compare``'s old ``test_samples`` still works, with a warning.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path

import click
import numpy as np
import pytest

import latentcheck as lc
from latentcheck import validation as v
from latentcheck.analysis.api import analyze_with_sample
from latentcheck.cli import cli
from latentcheck.errors import InputError
from latentcheck.options import (
    ANALYSIS_OPTIONS,
    COMPARE_OPTIONS,
    COMPARE_OWN,
    AnalysisOptions,
    CompareOptions,
)

PACKAGE = Path(lc.__file__).parent
#: small and fast: no energy replicates, MCD or pairwise joint tests on 600 rows
FAST = {"energy_resamples": 0, "joint_samples": 50, "mcd_samples": 3, "threads": 1}


def _data(seed: int = 0, n: int = 600, d: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _scrub(d: dict) -> dict:
    d.pop("created_at")
    return d


# ---------------------------------------------------------------------------------------
# nothing drifts: CLI, signatures, docstrings
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, options",
    [("report", ANALYSIS_OPTIONS), ("compare", COMPARE_OPTIONS)],
)
def test_every_cli_option_has_the_default_and_help_of_its_option(command, options):
    cmd = cli.commands[command]  # type: ignore[attr-defined]
    params = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    flagged = {name for name, opt in options.items() if opt.flag}
    assert flagged <= set(params), sorted(flagged - set(params))
    for name in flagged:
        opt, param = options[name], params[name]
        assert param.default == opt.command_default, name
        assert param.help == opt.help, name
        assert [*param.opts, *param.secondary_opts] == opt.flag.split("/"), name
        if opt.choices:
            assert isinstance(param.type, click.Choice)
            assert tuple(param.type.choices) == opt.choices, name
    # every other option of the command is one the options module does not describe
    # (inputs, output, gates), or compare's deprecated --test-samples
    others = set(params) - flagged
    assert not others & set(ANALYSIS_OPTIONS) - {"test_samples"}
    assert ("test_samples" in others) == (command == "compare")


@pytest.mark.parametrize(
    "fn, options",
    [(lc.analyze, ANALYSIS_OPTIONS), (lc.compare, COMPARE_OPTIONS)],
)
def test_signature_and_docstring_defaults_are_the_options(fn, options):
    sig = inspect.signature(fn).parameters
    doc = inspect.getdoc(fn)
    names = [n for n in sig if n in options]
    if fn is lc.analyze:
        assert names == list(ANALYSIS_OPTIONS)  # every option, in the same order
    else:
        assert names == [*COMPARE_OWN, "key", "channel_axis", "flatten"]
    for name in names:
        opt = options[name]
        assert sig[name].default == opt.default, name
        assert sig[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert f"\n{name} : {opt.type_doc}, {opt.default_doc()}\n" in doc, name
    assert sig["options"].default is None


def test_stream_takes_analyze_defaults():
    sig = inspect.signature(lc.Stream).parameters
    for name in ("channel_axis", "flatten", "seed", "test_samples", "sample_size", "nan"):
        assert sig[name].default == ANALYSIS_OPTIONS[name].default, name
    assert sig["max_joint_dims"].default == ANALYSIS_OPTIONS["max_joint_dims"].default
    assert lc.Stream().levels == AnalysisOptions().sigma_levels
    with pytest.raises(InputError, match="`test_samples` must be at least 3, got 2"):
        lc.Stream(test_samples=2)


def test_the_options_module_and_validation_agree_on_choices_and_levels():
    assert ANALYSIS_OPTIONS["nan"].choices == v.NAN_POLICIES
    assert AnalysisOptions().sigma_levels == tuple(float(k) for k in v.SIGMA_LEVELS)
    from latentcheck.comparison.api import RELATIONS

    assert COMPARE_OPTIONS["relation"].choices == tuple(RELATIONS)
    for name in set(ANALYSIS_OPTIONS) & set(COMPARE_OPTIONS):
        assert ANALYSIS_OPTIONS[name] is COMPARE_OPTIONS[name]  # shared, not copied


# ---------------------------------------------------------------------------------------
# validation: once, at the boundary, one line naming the option
# ---------------------------------------------------------------------------------------

BAD = [
    ("test_samples", 2, "`test_samples` must be at least 3, got 2"),
    ("test_samples", 2.5, "`test_samples` must be an integer"),
    ("seed", -1, "`seed` must be a non-negative integer below 2\\*\\*64 or None"),
    ("seed", True, "`seed` must be a non-negative integer"),
    ("alpha", 1.0, "`alpha` must be in \\(0, 1\\)"),
    ("nan", "drop", "`nan` must be one of omit, error, got 'drop'"),
    ("sigma_levels", [], "`sigma_levels` must hold at least one value"),
    ("sigma_levels", [3, -1], "`sigma_levels` must be a finite number >= 0"),
    ("top_pairs", -1, "`top_pairs` must be at least 0"),
    ("max_joint_dims", 0, "`max_joint_dims` must be at least 1"),
    ("energy_resamples", -1, "`energy_resamples` must be at least 0"),
    ("mcd_samples", 2, "`mcd_samples` must be at least 3"),
    ("active_threshold", float("nan"), "`active_threshold` must be a finite number >= 0"),
    ("mixture_samples", 1, "`mixture_samples` must be at least 2"),
    ("assume_scale", 0, "`assume_scale` must be > 0, got 0"),
    ("assume_shift", float("inf"), "`assume_shift` must be finite"),
    ("chunk_rows", 0, "`chunk_rows` must be at least 1"),
    ("threads", 0, "`threads` must be at least 1"),
    ("sample_size", 100, "`sample_size` must be at least 5000, got 100"),
]


@pytest.mark.parametrize("name, value, message", BAD)
def test_bad_options_raise_one_line_naming_the_option(name, value, message):
    with pytest.raises(InputError, match=message) as err:
        AnalysisOptions(**{name: value})
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=message):  # before any input is read
        lc.analyze("no-such-file.npy", **{name: value})


def test_the_default_sample_size_is_checked_against_the_test_rows():
    # sample_size=None resolves to at most 100 000 rows once the width is known: more test
    # rows than that need an explicit sample_size, said before any pass
    with pytest.raises(InputError, match="`sample_size` must be at least 200000, got 100000"):
        lc.analyze(_data(), test_samples=200_000)
    rep = lc.analyze(_data(), test_samples=200_000, sample_size=200_000, **FAST)
    assert rep.settings.sample_size == 200_000 and rep.settings.sample_rows == 600


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("dim_test_samples", 1, "`dim_test_samples` must be at least 2, got 1"),
        ("correction", "bonferroni", "`correction` must be one of holm, bh"),
        ("relation", "cousins", "`relation` must be one of same, unrelated"),
        ("min_kl_delta", -0.1, "`min_kl_delta` must be a finite number >= 0"),
        ("sample_size", 4999, "`sample_size` must be at least 5000"),  # analyze's test rows
        ("nan", "drop", "`nan` must be one of omit, error"),  # passed on: checked up front
    ],
)
def test_bad_compare_options(name, value, message):
    with pytest.raises(InputError, match=message):
        CompareOptions(**{name: value})
    with pytest.raises(InputError, match=message):
        lc.compare("a.npy", "b.npy", **{name: value})


def test_unknown_options_are_type_errors():
    with pytest.raises(TypeError, match="test_sample"):
        AnalysisOptions(test_sample=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="CompareOptions has no option 'bogus'"):
        lc.compare(_data(), _data(1), bogus=1)
    with pytest.raises(InputError, match="`options` must be a AnalysisOptions"):
        lc.analyze(_data(), options=CompareOptions())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "{npy}", "--test-samples", "2"], "`test_samples` must be at least 3, got 2"),
        (["report", "{npy}", "--alpha", "1.5"], "`alpha` must be in (0, 1), got 1.5"),
        (["report", "{npy}", "--threads", "0"], "`threads` must be at least 1, got 0"),
        (["report", "{npy}", "--nan", "drop"], "'drop' is not one of 'omit', 'error'"),
        (["compare", "{npy}", "{npy}", "--dim-test-samples", "1"], "`dim_test_samples` must be"),
        (["compare", "{npy}", "{npy}", "--min-shift", "-1"], "`min_shift` must be a finite"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(runner, tmp_path, args, message):
    npy = tmp_path / "z.npy"
    np.save(npy, _data())
    res = runner.invoke(cli, [a.format(npy=npy) for a in args])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr


def test_the_seed_is_checked_and_drawn_once_on_the_posterior_path(monkeypatch):
    # the posterior path used to check the seed in analyze_with_sample and again in
    # analyze_source; a drawn seed must be the one the draw of z and the report use
    checked, drawn = [], []
    real_check, real_draw = v.check_seed_value, v.draw_seed

    def check(seed):
        caller = Path(sys._getframe(1).f_code.co_filename).name
        if caller != "validation.py":  # not stats.mixture's own check_seed (a public function)
            checked.append((caller, seed))
        return real_check(seed)

    monkeypatch.setattr(v, "check_seed_value", check)
    monkeypatch.setattr(v, "draw_seed", lambda: (drawn.append(1), real_draw())[1])
    mu = _data(3)
    rep = lc.analyze(mu=mu, logvar=np.full_like(mu, -1.0), seed=7, **FAST)
    assert checked == [("options.py", 7)] and drawn == []
    assert rep.settings.seed == 7
    checked.clear()
    rep = lc.analyze(mu=mu, logvar=np.full_like(mu, -1.0), seed=None, **FAST)
    assert checked == [] and len(drawn) == 1
    assert f"(seed {rep.settings.seed};" in rep.input.aggregate


# ---------------------------------------------------------------------------------------
# options objects and keywords give the same report
# ---------------------------------------------------------------------------------------


def test_analyze_with_an_options_object_equals_the_keywords():
    x = _data(4)
    fields = {"seed": 3, "test_samples": 300, "sample_size": 400, "sigma_levels": (2, 3), **FAST}
    opts = AnalysisOptions(**fields)
    want = _scrub(lc.analyze(x, **fields).to_dict())
    assert _scrub(lc.analyze(x, options=opts).to_dict()) == want
    assert _scrub(analyze_with_sample(x, options=opts).report.to_dict()) == want
    # a keyword away from its default replaces the field; one left at its default does not
    other = _scrub(lc.analyze(x, options=opts, seed=5, test_samples=5000).to_dict())
    assert other == _scrub(lc.analyze(x, **{**fields, "seed": 5}).to_dict())
    assert opts.replace(seed=5).seed == 5 and opts.seed == 3  # frozen
    with pytest.raises(AttributeError):
        opts.seed = 4  # type: ignore[misc]


def test_compare_with_an_options_object_equals_the_keywords():
    a, b = _data(5), _data(6) * [1.0, 1.0, 1.3]
    fields = {"seed": 2, "n_permutations": 0, "dim_test_samples": 400, "relation": "same"}
    fields |= {"sample_size": 5000, **FAST}
    want = _scrub(lc.compare(a, b, **fields).to_dict())
    got = _scrub(lc.compare(a, b, options=CompareOptions(**fields)).to_dict())
    assert got == want
    assert want["settings"]["test_samples"] == 400  # the JSON key keeps its name


def test_issue_17_compare_test_samples_is_a_deprecated_alias():
    a, b = _data(7), _data(8) * [1.0, 1.2, 1.0]
    kw = {"seed": 1, "n_permutations": 0, **FAST}
    with pytest.warns(FutureWarning, match="now `dim_test_samples`") as rec:
        old = lc.compare(a, b, test_samples=300, **kw)
    assert rec[0].filename == __file__  # points at the caller
    new = lc.compare(a, b, dim_test_samples=300, **kw)
    assert _scrub(old.to_dict()) == _scrub(new.to_dict())
    assert new.comparisons[0].test_rows == (300, 300)
    with pytest.raises(InputError, match="Give `dim_test_samples` only"):
        lc.compare(a, b, test_samples=300, dim_test_samples=400, **kw)


@pytest.mark.slow  # three compare runs through the CLI: about 4 s on a busy machine
def test_issue_17_cli_test_samples_of_compare_is_a_deprecated_alias(runner, tmp_path):
    paths = []
    for i, scale in enumerate((1.0, 1.2)):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], _data(9 + i) * scale)
    base = ["compare", *paths, "--format", "json", "--n-permutations", "0", "--threads", "1"]
    old = runner.invoke(cli, [*base, "--test-samples", "300"])
    new = runner.invoke(cli, [*base, "--dim-test-samples", "300"])
    assert old.exit_code == new.exit_code == 0, old.stderr + new.stderr
    assert "--test-samples is deprecated; use --dim-test-samples" in old.stderr
    assert new.stderr == ""
    got, want = json.loads(old.stdout), json.loads(new.stdout)
    assert _scrub(got) == _scrub(want)
    assert want["comparisons"][0]["test_rows"] == [300, 300]
    both = runner.invoke(cli, [*base, "--test-samples", "300", "--dim-test-samples", "400"])
    assert both.exit_code == 2 and both.stdout == ""
    assert "Give --dim-test-samples only" in both.stderr


def test_stream_report_takes_the_finishing_options_only():
    s = lc.Stream(seed=0, test_samples=100)
    s.update(_data(11, n=400))
    with pytest.raises(TypeError, match="unexpected keyword arguments threads"):
        s.report(threads=2)
    with pytest.raises(InputError, match="`top_rows` must be at least 0"):
        s.report(top_rows=-1)
    rep = s.report(energy_resamples=None, top_pairs=2)  # None: the joint tests' default
    assert len(rep.joint.top_pairs) == 2


# ---------------------------------------------------------------------------------------
# the limits of issue 17 in the modules of this stage
# ---------------------------------------------------------------------------------------

MODULES = [
    "analysis/api.py",
    "analysis/common.py",
    "analysis/finish.py",
    "analysis/run.py",
    "options.py",
    "cli.py",
    "analysis/stream_finish.py",
]


@pytest.mark.parametrize("module", MODULES)
def test_issue_17_no_long_functions_or_modules(module):
    text = (PACKAGE / module).read_text(encoding="utf-8")
    reason = "Longer than 600 lines on purpose" in (ast.get_docstring(ast.parse(text)) or "")
    assert len(text.splitlines()) < 600 or reason, module
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            # the docstring does not count: analyze's Parameters are written from options.py
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body
            lines = (node.end_lineno or 0) - body[0].lineno + 1
            assert lines <= 100, f"{module}:{node.name} has {lines} lines"
