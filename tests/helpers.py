"""Assertions shared by the test modules."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def assert_json_close(
    a: Any, b: Any, *, rel: float, abs_tol: float = 1e-12, path: str = ""
) -> None:
    """Assert two JSON trees equal: the same keys in the same order, numbers to `rel`.

    A float may match an int (JSON writes 2.0 as 2.0 but a reader may give 2); `abs_tol`
    covers values that are 0 up to rounding. `path` names the first difference.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            assert_json_close(a[k], b[k], rel=rel, abs_tol=abs_tol, path=f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_json_close(x, y, rel=rel, abs_tol=abs_tol, path=f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        assert a == pytest.approx(b, rel=rel, abs=abs_tol), path
    else:
        assert a == b, path


REPO = Path(__file__).resolve().parent.parent


def load_doc_script(name: str) -> ModuleType:
    """Return the module of ``docs/<name>.py`` (registered, so its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a script's dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def assert_document_fresh(document: str, script: str, built: str) -> None:
    """Fail with a diff when ``docs/<document>`` differs from a fresh run of its script."""
    committed = (REPO / "docs" / document).read_text(encoding="utf-8")
    if committed == built:
        return
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            built.splitlines(keepends=True),
            f"docs/{document} (committed)",
            f"fresh run of docs/{script}.py",
            n=1,
        )
    )
    pytest.fail(
        f"docs/{document} differs from what latentcheck now computes; review and run "
        f"`python docs/{script}.py`:\n{diff[:6000]}"
    )
