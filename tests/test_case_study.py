"""The case study in docs/case-study.md quotes exactly what latentcheck computes.

docs/make_case_study.py runs the tool over the shipped samples and fills the document's
tables and prose; this test regenerates the text in memory and compares it with the committed
file, so a change of any figure (or of the tool's printed output that the document quotes)
fails here until the document is regenerated with ``python docs/make_case_study.py``.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs" / "make_case_study.py"
DOCUMENT = REPO / "docs" / "case-study.md"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_case_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_case_study_matches_a_fresh_run() -> None:
    expected = _load_script().build_case_study()
    committed = DOCUMENT.read_text(encoding="utf-8")
    if committed != expected:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                "docs/case-study.md (committed)",
                "fresh run of docs/make_case_study.py",
                n=1,
            )
        )
        pytest.fail(
            "docs/case-study.md differs from what latentcheck now computes; review and run "
            f"`python docs/make_case_study.py`:\n{diff[:6000]}"
        )


@pytest.mark.parametrize(
    ("x", "digits", "text"),
    [
        (0.0, 3, "0"),
        (326.46579, 3, "326"),
        (12160.5, 3, "12200"),
        (18.4578, 3, "18.5"),
        (9.996, 3, "10.0"),
        (0.0022598, 2, "0.0023"),
        (-0.0125258, 3, "-0.0125"),
        (1.9731e-09, 2, "2.0e-09"),
        (None, 3, "—"),
        (float("nan"), 3, "—"),
    ],
)
def test_number_format(x: float | None, digits: int, text: str) -> None:
    assert _load_script().num(x, digits) == text


@pytest.mark.parametrize(
    ("p", "text"), [(0.0, "< 1e-300"), (2.03e-125, "2e-125"), (0.7717, "0.77"), (0.01, "0.01")]
)
def test_pvalue_format(p: float, text: str) -> None:
    assert _load_script().pval(p) == text


def test_rewrap_keeps_tables_code_and_bullets() -> None:
    rewrap = _load_script()._rewrap
    text = (
        "A short\nparagraph.\n\n| a | b |\n| --- | --- |\n\n```\nkeep   this\n  as is\n```\n\n"
        "- one bullet that\n  continues\n- two\n"
    )
    assert rewrap(text, width=40) == (
        "A short paragraph.\n\n| a | b |\n| --- | --- |\n\n```\nkeep   this\n  as is\n```\n\n"
        "- one bullet that continues\n- two\n"
    )
