"""``--fail-on`` conditions: small comparisons evaluated on a report's JSON form.

Grammar::

    EXPR  := [FUNC "("] PATH [")"] OP NUMBER
    FUNC  := max | min | sum | mean | count
    PATH  := key("." key)*        key: a dict key, a list index, or * for every element
    OP    := > | >= | < | <= | == | !=

``summary.outlier_rate.4 > 0.001`` compares one number; ``max(dims.*.kl_marginal) > 0.5``
aggregates; a path with ``*`` and no function holds if any element satisfies the comparison.
``null`` values (NaN in the report) never satisfy a comparison; ``true``/``false`` count as
1 and 0. Nothing is ``eval``-ed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from .errors import InputError

__all__ = ["evaluate", "resolve"]

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
FUNCS: dict[str, Callable[[list[float]], float]] = {
    "max": lambda xs: max(xs) if xs else math.nan,
    "min": lambda xs: min(xs) if xs else math.nan,
    "sum": lambda xs: math.fsum(xs),
    "mean": lambda xs: math.fsum(xs) / len(xs) if xs else math.nan,
    "count": lambda xs: float(len(xs)),
}
_EXPR = re.compile(
    r"^\s*(?:(?P<func>[a-z]+)\(\s*(?P<fpath>[^()\s]+)\s*\)|(?P<path>[^()\s<>=!]+))\s*"
    r"(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def resolve(data: Any, path: str) -> list[Any]:
    """Return the values at a dotted `path` (``*`` expands lists and dicts)."""
    current = [data]
    walked: list[str] = []
    for key in path.split("."):
        nxt: list[Any] = []
        for node in current:
            if key == "*":
                if isinstance(node, list):
                    nxt.extend(node)
                elif isinstance(node, dict):
                    nxt.extend(node.values())
                else:
                    raise InputError(f"`*` after {'.'.join(walked) or 'the top'} needs a list")
            elif isinstance(node, dict):
                if key not in node:
                    keys = ", ".join(list(node)[:20])
                    raise InputError(
                        f"The report has no key {key!r} at {'.'.join(walked) or 'the top'}; "
                        f"keys there: {keys}"
                    )
                nxt.append(node[key])
            elif isinstance(node, list):
                if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
                    raise InputError(
                        f"{'.'.join(walked)} is a list of {len(node)}; use an index or *"
                    )
                nxt.append(node[int(key)])
            else:
                raise InputError(f"{'.'.join(walked)} is a value, not a dict or list")
        walked.append(key)
        current = nxt
    return current


def evaluate(expression: str, report: dict[str, Any]) -> bool:
    """Return True if the condition `expression` holds for `report` (a report dict).

    Raises
    ------
    InputError
        If the expression does not parse or its path is not in the report.
    """
    m = _EXPR.match(expression)
    if m is None:
        raise InputError(
            f"Cannot read --fail-on {expression!r}; write PATH OP NUMBER, e.g. "
            '"summary.outlier_rate.4 > 0.001" or "max(dims.*.kl_marginal) > 0.5"'
        )
    func, path = m.group("func"), m.group("fpath") or m.group("path")
    op = OPS[m.group("op")]
    threshold = float(m.group("num"))
    values = resolve(report, path)
    numbers = []
    for x in values:
        if x is None:
            continue
        if not isinstance(x, (int, float)):  # booleans count as 0 and 1
            raise InputError(f"--fail-on {path} is not a number (found {type(x).__name__})")
        numbers.append(float(x))
    if func is not None:
        if func not in FUNCS:
            raise InputError(f"Unknown function {func!r} in --fail-on; use {', '.join(FUNCS)}")
        value = FUNCS[func](numbers)
        return not math.isnan(value) and op(value, threshold)
    return any(op(x, threshold) for x in numbers if not math.isnan(x))
