"""Issue 20's fuzz harness: every file of tests/hostile_corpus.py is reported or refused.

Each input must end in exit 0 with a valid report or exit 2 with one line on stderr:
no traceback, no hang (FIFOs and devices are refused unopened), no allocation by a
header's word, and no code run from a pickle (the payload would create ``PWNED``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from latentcheck.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from hostile_corpus import make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "files")


@pytest.mark.slow
def test_issue_20_fuzz_corpus_is_reported_or_refused_in_one_line(
    runner, corpus, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # where a payload would write PWNED
    outcomes = {0: 0, 2: 0}
    failures = []
    for path in corpus:
        cmd = ["report", str(path), "--format", "json", "--test-samples", "200"]
        if path.suffix == ".json":
            cmd = ["compare", str(path), str(path)]
        res = runner.invoke(cli, cmd)
        if res.exit_code == 2:
            lines = res.stderr.strip().splitlines()
            if len(lines) != 1 or not lines[0].startswith("Error: ") or res.stdout:
                failures.append((path.name, res.stderr))
        elif res.exit_code == 0:
            if json.loads(res.stdout)["input"]["n_dims"] < 1:
                failures.append((path.name, res.stdout[:200]))
        else:
            failures.append((path.name, res.exit_code, repr(res.exception)))
            continue
        outcomes[res.exit_code] += 1
    assert failures == []
    assert not (tmp_path / "PWNED").exists()
    # the corpus exercises both ends: most files are refused, some mutants still read
    assert outcomes[2] >= 40 and outcomes[0] >= 1, outcomes
