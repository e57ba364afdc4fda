"""Issue 20, usage errors and warnings: one line, ranges checked, overflow named as such."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli


@pytest.fixture
def npy(latents_file):
    return latents_file(np.random.default_rng(0).standard_normal((300, 3)), name="z.npy")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seed", str(2**64)], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--width", "0"], "--width"),
        (["--max-dims", "-1"], "--max-dims"),
        (["--width", "abc"], "not a valid integer"),
        (["--bogus"], "No such option"),
        (["--format", "pdf"], "--format"),
    ],
)
def test_issue_20_usage_errors_are_one_line_with_a_hint(runner, npy, args, words):
    res = runner.invoke(cli, ["report", str(npy), *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ") and words in lines[0]
    assert lines[0].endswith("report --help')")
    assert res.stdout == ""


def test_issue_20_unknown_command_is_one_line(runner):
    res = runner.invoke(cli, ["repor"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "Error: No such command 'repor'. Did you mean 'report'? (see 'cli --help')"
    ]


def test_issue_20_largest_seed_works_and_api_refuses_2_64(npy):
    rep = lc.analyze(str(npy), seed=2**64 - 1, test_samples=50)
    assert rep.settings.seed == 2**64 - 1
    with pytest.raises(lc.InputError, match=r"below 2\*\*64"):
        lc.analyze(str(npy), seed=2**64)


@pytest.mark.parametrize("scale", [1e308, 1e200, 1e80])
def test_issue_20_overflow_is_named_not_constant_and_no_warning_printed(
    runner, latents_file, scale
):
    signs = np.random.default_rng(1).choice([-1.0, 1.0], size=(400, 3))
    x = signs * scale * np.random.default_rng(2).uniform(0.5, 1.0, size=(400, 3))
    x[:, 2] = np.random.default_rng(3).standard_normal(400)  # an ordinary dimension
    path = latents_file(x, name="huge.npy")
    res = runner.invoke(cli, ["report", str(path)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # no RuntimeWarning before the error line
    assert "too large for float64" in lines[0] and "(0, 1)" in lines[0]
    assert "are constant" not in lines[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's own, in the API
        with pytest.raises(lc.InputError, match="2 dimension"):
            lc.analyze(x)


def test_issue_20_float32_near_its_maximum_is_analysed(latents_file):
    # float32 values up to 3.4e38 are summed in float64 (squares ~1e77): no overflow
    rng = np.random.default_rng(4)
    x = (rng.choice([-1, 1], (500, 2)) * rng.uniform(2.9e38, 3.4e38, (500, 2))).astype(np.float32)
    rep = lc.analyze(x, test_samples=100)
    std = rep.dims.std
    # the two-point-like distribution: std close to the RMS of |x| (mean ~ 0)
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=0))
    np.testing.assert_allclose(std, np.std(x.astype(np.float64), axis=0, ddof=0), rtol=1e-6)
    assert np.all(std <= rms * (1 + 1e-9))
