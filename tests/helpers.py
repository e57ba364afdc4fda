"""Assertions shared by the test modules."""

from __future__ import annotations

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
