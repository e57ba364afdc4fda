"""Issue 18: a VAE's normalisation config checked against the latents (--vae-config)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.errors import InputError
from latentcheck.stats.normalization import check_normalization
from latentcheck.vaeconfig import check_vae_config, load_vae_config

MEAN = np.array([0.5, -1.0, 0.0, 2.0])
STD = np.array([2.0, 0.5, 1.0, 3.0])


@pytest.fixture(scope="module")
def z() -> np.ndarray:
    return np.random.default_rng(18).standard_normal((4000, 4)) * STD + MEAN


@pytest.fixture(scope="module")
def report(z: np.ndarray) -> lc.Report:
    return lc.analyze(z, seed=0, energy_resamples=0)


def test_issue_18_global_config_is_the_assume_scale_check(z, report) -> None:
    sf, sh = 0.3, 0.4
    rep = check_vae_config(report, {"scaling_factor": sf, "shift_factor": sh, "other": 1})
    check = rep.summary.normalization_check
    assert check is not None
    # the same check as --assume-scale/--assume-shift, from numpy's moments
    ref = check_normalization(
        z.size // 4,
        z.mean(),
        z.std(),
        assume_scale=sf,
        assume_shift=sh,
        per_dim_mean=z.mean(axis=0),
        per_dim_std=z.std(axis=0),
    )
    assert check["normalized_std"] == pytest.approx(z.std() * sf, rel=1e-12)
    assert check["normalized_mean"] == pytest.approx((z.mean() - sh) * sf, rel=1e-12)
    assert check["verdict"] == ref.verdict and tuple(check["mistakes"]) == ref.mistakes
    block = check["vae_config"]
    assert block["fits"] is False and rep.summary.findings[-1].status == "warn"
    assert block["fitted"]["scaling_factor"] == pytest.approx(1 / z.std(), rel=1e-12)
    assert "do not fit" in rep.summary.verdict
    fits = check_vae_config(report, {"scaling_factor": 1 / z.std(), "shift_factor": z.mean()})
    assert fits.summary.normalization_check["vae_config"]["fits"] is True
    # a global constant cannot fix channels whose stds differ 6-fold: noted, not warned
    assert fits.summary.findings[-1].status == "note"
    assert "per_channel_needed" in fits.summary.normalization_check["mistakes"]


def test_issue_18_per_channel_config(z, report) -> None:
    good = {"latents_mean": z.mean(axis=0).tolist(), "latents_std": z.std(axis=0).tolist()}
    rep = check_vae_config(report, {"vae": good})  # nested one level, as in some YAMLs
    per = rep.summary.normalization_check["vae_config"]["per_channel"]
    assert per["fits"] is True
    np.testing.assert_allclose(per["normalized_std"], 1.0, rtol=1e-12)
    # diffusers' (z - latents_mean) * scaling_factor / latents_std, by numpy
    bad = {"latents_mean": [0.5, -1.0, 0.0, 0.0], "latents_std": [2.0, 0.5, 1.0, 1.0]}
    sf = 1.1
    per = check_vae_config(report, {**bad, "scaling_factor": sf}).summary
    block = per.normalization_check["vae_config"]["per_channel"]
    zn = (z - np.array(bad["latents_mean"])) * sf / np.array(bad["latents_std"])
    np.testing.assert_allclose(block["normalized_mean"], zn.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(block["normalized_std"], zn.std(axis=0), rtol=1e-10)
    off = (np.abs(zn.mean(axis=0)) >= 0.1) | (np.abs(zn.std(axis=0) - 1) > 0.1)
    assert block["channels_off"] == np.flatnonzero(off).tolist()
    assert block["fits"] is False and per.findings[-1].status == "warn"
    with pytest.raises(InputError, match="4 dimensions"):
        check_vae_config(report, {"latents_mean": [0.0], "latents_std": [1.0]})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"foo": 1}, "none of the keys"),
        ({"scaling_factor": -1}, "must be > 0"),
        ({"scaling_factor": "x"}, "must be a number"),
        ({"latents_mean": [0, 1]}, "go together"),
        ({"latents_mean": [0, 1], "latents_std": [1]}, "has 2 values"),
        ({"latents_mean": [0], "latents_std": [0]}, "must be > 0"),
        ({"shift_factor": 0.1}, "neither"),
    ],
)
def test_issue_18_bad_configs(report, config, message) -> None:
    with pytest.raises(InputError, match=message):
        check_vae_config(report, config)


def test_issue_18_yaml_config(tmp_path, report, monkeypatch) -> None:
    pytest.importorskip("yaml")
    p = tmp_path / "vae.yaml"
    p.write_text("model:\n  scaling_factor: 0.18215\n  shift_factor: 0.0\n")
    assert load_vae_config(p).scaling_factor == 0.18215
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    with pytest.raises(InputError, match="PyYAML"):
        load_vae_config(p)


def test_issue_18_cli_vae_config_and_emit_config(runner, latents_file, tmp_path, z) -> None:
    npy = latents_file(z)
    res = runner.invoke(cli, ["report", str(npy), "--emit-config", "--energy-resamples", "0"])
    assert res.exit_code == 0, res.stderr
    emitted = json.loads(res.stdout)
    assert emitted["scaling_factor"] == pytest.approx(1 / z.std(), rel=1e-12)
    assert emitted["shift_factor"] == pytest.approx(z.mean(), rel=1e-12)
    np.testing.assert_allclose(emitted["latentcheck"]["channel_std"], z.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        emitted["latents_std"], z.std(axis=0) * emitted["scaling_factor"], rtol=1e-12
    )
    # what --emit-config prints fits the latents when read back as --vae-config
    cfg = tmp_path / "config.json"
    cfg.write_text(res.stdout)
    res = runner.invoke(
        cli,
        [
            "report",
            str(npy),
            "--vae-config",
            str(cfg),
            "--format",
            "json",
            "--energy-resamples",
            "0",
        ],
    )
    assert res.exit_code == 0, res.stderr
    block = json.loads(res.stdout)["summary"]["normalization_check"]["vae_config"]
    assert block["fits"] is True
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = runner.invoke(cli, ["report", str(npy), "--vae-config", str(bad)])
    assert res.exit_code == 2 and "not valid JSON" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
