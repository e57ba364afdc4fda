"""Reproducible reports: ``created_at`` honours SOURCE_DATE_EPOCH (reproducible-builds.org).

With it set, two runs on the same data and seed write byte-identical reports; without it
``created_at`` is the current UTC time. A malformed value is refused at once (exit 2, one
line), before any analysis and before any file is written.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.model.base import created_at

EPOCH = 1_700_000_000


@pytest.fixture
def z_file(tmp_path):
    path = tmp_path / "z.npy"
    np.save(path, np.random.default_rng(3).standard_normal((600, 4)).astype(np.float32))
    return path


def test_created_at_is_now_in_utc_without_the_variable(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = datetime.datetime.fromisoformat(created_at())
    after = datetime.datetime.now(datetime.timezone.utc)
    assert stamp.utcoffset() == datetime.timedelta(0)
    assert before <= stamp <= after


def test_created_at_follows_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    assert created_at() == "2023-11-14T22:13:20+00:00"
    report = lc.analyze(np.random.default_rng(0).standard_normal((300, 3)), seed=1)
    assert report.created_at == "2023-11-14T22:13:20+00:00"
    assert report.to_dict()["created_at"] == "2023-11-14T22:13:20+00:00"


def test_cli_json_is_byte_identical_across_runs(runner, z_file):
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    runs = [
        runner.invoke(cli, ["report", str(z_file), "--format", "json", "--seed", "5"], env=env)
        for _ in range(2)
    ]
    assert all(r.exit_code == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert '"created_at": "2023-11-14T22:13:20+00:00"' in runs[0].stdout


def test_compare_follows_source_date_epoch(runner, z_file):
    env = {"SOURCE_DATE_EPOCH": "0"}
    res = runner.invoke(cli, ["compare", str(z_file), str(z_file), "--format", "json"], env=env)
    assert res.exit_code == 0, res.stderr
    assert '"created_at": "1970-01-01T00:00:00+00:00"' in res.stdout


@pytest.mark.parametrize("value", ["yesterday", "1.5", "", "9" * 30])
def test_malformed_source_date_epoch_is_refused_before_any_work(runner, z_file, tmp_path, value):
    out = tmp_path / "r.json"
    res = runner.invoke(
        cli, ["report", str(z_file), "-o", str(out)], env={"SOURCE_DATE_EPOCH": value}
    )
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "SOURCE_DATE_EPOCH" in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()
