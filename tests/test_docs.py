"""The README and the CLI agree: commands, options, JSON keys, the quick start, CI."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import click
import pytest

import latentcheck as lc
from latentcheck.cli import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, click.Command]:
    return dict(cli.commands)  # type: ignore[attr-defined]


def test_every_command_has_help_and_is_in_the_readme():
    assert set(_commands()) == {"report", "compare", "profile"}
    for name, cmd in _commands().items():
        assert cmd.help and len(cmd.help.strip()) > 40, name
        assert f"latentcheck {name}" in README, name


@pytest.mark.parametrize("command", ["report", "compare", "profile"])
def test_every_documented_option_exists(command):
    params = {
        opt
        for p in _commands()[command].params
        for opt in getattr(p, "opts", [])
        if opt[:2] == "--"
    }
    # every --option the README mentions next to this command is a real option of some command
    mentioned = set(re.findall(r"(--[a-z][a-z-]+)", README))
    known = set().union(
        *(
            {
                o
                for p in c.params
                for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]
                if o.startswith("--")
            }
            for c in _commands().values()
        )
    ) | {"--help", "--version", "--scipy"}  # --scipy: the benchmark script's option
    assert mentioned <= known, sorted(mentioned - known)
    assert params  # the command has options at all


def test_quick_start_is_two_commands_and_ci_runs_the_readme_test_command():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)\n```", quick, flags=re.S)
    assert len(blocks) == 2
    install_run, install_test = blocks
    assert install_run.startswith("pip install . && latentcheck report sample_latents/")
    sample = install_run.split("latentcheck report ", 1)[1].split()[0]
    assert (ROOT / sample).is_file()
    assert install_test == "pip install -e '.[test]' && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet -e '.[test]'" in ci
    assert re.search(r"^python -m pytest$", ci, flags=re.M)


def test_every_per_dimension_key_of_the_schema_is_documented():
    schema = json.loads(files("latentcheck").joinpath("schema/report.schema.json").read_text())
    dim_keys = schema["properties"]["dims"]["items"]["properties"]
    for key in dim_keys:
        assert f"`{key}" in README, key
    for key in ("kl_per_dim", "rate_nats", "active_units", "mutual_information", "dimwise_kl"):
        assert f"`{key}" in README, key


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), target


def test_changelog_has_unreleased_on_top():
    log = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## .*$", log, flags=re.M)
    assert first is not None and first.group(0) == "## Unreleased"


def test_issue_16_readme_verdict_rules_quote_the_code_constants():
    """Every `NAME` = value in the README's "Verdict rules" table is the code's constant,
    and every finding code the verdict can emit is in the table."""
    from latentcheck import validation as _validation
    from latentcheck import verdict
    from latentcheck.model import report

    section = README.split("### Verdict rules", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    quoted = re.findall(r"`([A-Z_]+)` = ([0-9.]+)", section)
    names = {name for name, _ in quoted}
    expected = {
        "MIN_ROWS_VERDICT",
        "MIN_ROWS",
        "DEAD_STD_FRACTION",
        "SCALE_BAND",
        "MEAN_BAND",
        "SCALE_SPREAD_RATIO",
        "TAIL_RATIO",
        "TAIL_ALPHA",
        "SUPPRESSED_RATIO",
        "NEGENTROPY_WARN",
        "RATE_SHARE",
        "MI_CEILING_TOL",
    }
    assert names == expected
    for name, value in quoted:
        homes = [m for m in (verdict, _validation, report) if hasattr(m, name)]
        assert len(homes) == 1, name
        const = getattr(homes[0], name)
        assert float(value) == pytest.approx(float(const), rel=1e-12), name
    source = "".join(
        (ROOT / "latentcheck" / name).read_text(encoding="utf-8")
        for name in ("verdict.py", "verdict_rules.py")
    )
    emitted = set(re.findall(r'code="([a-z_]+)"', source))
    documented = set(re.findall(r"`([a-z_]+)`", section))
    assert emitted and emitted <= documented, emitted - documented


def test_issue_17_docs_use_the_public_surface():
    """The README and docs name only what ``latentcheck`` exports (``lc.<name>``), the
    extension packages (``latentcheck.io`` readers, ``latentcheck.render`` renderers) and
    the exception types; module paths of internals appear only in the Architecture map."""
    public_packages = ("latentcheck.io", "latentcheck.render", "latentcheck.errors")
    texts = {"README.md": README}
    texts.update({p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")})
    for name, text in texts.items():
        if name == "README.md":
            text = re.sub(r"\n## Architecture\n.*?(?=\n## )", "\n", text, flags=re.S)
        for attr in set(re.findall(r"\blc\.([A-Za-z_]\w*)", text)):
            assert hasattr(lc, attr), f"{name}: lc.{attr} is not exported"
        for path in set(re.findall(r"\blatentcheck((?:\.[a-z_]\w*)+)", text)):
            full = "latentcheck" + path
            public = full.split(".")[1] in lc.__all__ or hasattr(lc, full.split(".")[1])
            assert full.startswith(public_packages) or public, (
                f"{name}: {full} is an internal path; export it or name lc.<name>"
            )
