"""``--fail-on`` conditions: small comparisons evaluated on a report's JSON form.

Grammar::

    EXPR  := [FUNC "("] PATH [")"] OP NUMBER  |  PATH (== | !=) WORD
    FUNC  := max | min | sum | mean | count
    PATH  := key("." key)*        key: a dict key, a list index, or * for every element
    OP    := > | >= | < | <= | == | !=
    WORD  := a bare word or a quoted string, compared with text values

``summary.outlier_rate.4 > 0.001`` compares one number; ``max(dims.*.kl_marginal) > 0.5``
aggregates; a path with ``*`` and no function holds if any element satisfies the comparison:
``summary.findings.*.code == heavy_tails`` holds when some finding has that code, and
``summary.findings.*.status == warn`` when any finding warns (``--fail-on-warn``).
``null`` values (NaN in the report) never satisfy a comparison; ``true``/``false`` count as
1 and 0. :func:`check` also returns the value that made a condition hold, and a path the
report lacks is refused with the nearest valid keys ("did you mean"). Nothing is ``eval``-ed.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from .errors import InputError

__all__ = ["check", "evaluate", "findings_gate", "resolve"]

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
    r"(?P<op>>=|<=|==|!=|>|<)\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_][\w.-]*)|'(?P<sq>[^']*)'|\"(?P<dq>[^\"]*)\")\s*$"
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
                    raise InputError(_no_key(key, node, walked))
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


def _no_key(key: str, node: dict[str, Any], walked: list[str]) -> str:
    """Return the message for a missing `key`, with the nearest keys as suggestions."""
    where = ".".join(walked) or "the top"
    near = difflib.get_close_matches(key, [str(k) for k in node], n=3, cutoff=0.5)
    prefix = ".".join(walked) + "." if walked else ""
    hint = f"; did you mean {' or '.join(prefix + k for k in near)}?" if near else ""
    keys = ", ".join(list(node)[:20])
    return f"The report has no key {key!r} at {where}{hint} (keys there: {keys})"


def _fmt_value(x: Any) -> str:
    """Return a value for a gate's message."""
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def check(expression: str, report: dict[str, Any]) -> tuple[bool, str]:
    """Return whether `expression` holds for `report`, and the value that decided it.

    The second item reads like ``max(dims.*.kl_marginal) = 0.71`` or
    ``summary.findings.2.code = heavy_tails`` (the first element that satisfies a ``*``
    path), or the value that did not satisfy the condition.

    Raises
    ------
    InputError
        If the expression does not parse or its path is not in the report.
    """
    m = _EXPR.match(expression)
    if m is None:
        raise InputError(
            f"Cannot read --fail-on {expression!r}; write PATH OP NUMBER or PATH == WORD, e.g. "
            '"summary.outlier_rate.4 > 0.001", "max(dims.*.kl_marginal) > 0.5" or '
            '"summary.findings.*.code == heavy_tails"'
        )
    func, path = m.group("func"), m.group("fpath") or m.group("path")
    opname = m.group("op")
    op = OPS[opname]
    word = m.group("word")
    if word is None:
        word = m.group("sq") if m.group("sq") is not None else m.group("dq")
    values = resolve(report, path)
    if word is not None:
        if func is not None or opname not in ("==", "!="):
            raise InputError(
                f"--fail-on {expression!r}: text values take only == or != and no function"
            )
        for i, x in enumerate(values):
            if x is None:
                continue
            if not isinstance(x, str):
                raise InputError(
                    f"--fail-on {path} is not text (found {type(x).__name__}); "
                    "compare it with a number"
                )
            if (x == word) == (opname == "=="):
                return True, f"{_element(path, i)} = {x}"
        shown = sorted({str(x) for x in values if x is not None})
        return False, f"{path} = {', '.join(shown) or 'nothing'}"
    threshold = float(m.group("num"))
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
        held = not math.isnan(value) and op(value, threshold)
        return held, f"{func}({path}) = {_fmt_value(value)}"
    for i, x in enumerate(values):
        if x is not None and not math.isnan(float(x)) and op(float(x), threshold):
            return True, f"{_element(path, i)} = {_fmt_value(x)}"
    if len(numbers) == 1:
        return False, f"{path} = {_fmt_value(numbers[0])}"
    return False, f"{path}: no element satisfies it"


def _element(path: str, i: int) -> str:
    """Return `path` with its first ``*`` replaced by `i` when it has exactly one."""
    return path.replace("*", str(i)) if path.count("*") == 1 else path


def findings_gate(report: dict[str, Any]) -> list[str]:
    """Return one line per warn finding (``--fail-on-warn``): code, dims and text.

    Reads ``summary.findings`` of a report, or the ``findings`` of every comparison of a
    compare result.
    """
    groups: list[list[dict[str, Any]]] = []
    if isinstance(report.get("summary"), dict):
        groups.append(list(report["summary"].get("findings") or []))
    for c in report.get("comparisons") or []:
        groups.append(list(c.get("findings") or []))
    out = []
    for findings in groups:
        for f in findings:
            if f.get("status") == "warn":
                dims = f.get("dims") or []
                where = f" (dims {', '.join(map(str, dims[:10]))})" if dims else ""
                out.append(f"{f.get('code') or f.get('aspect')}{where}: {f.get('text')}")
    return out


def evaluate(expression: str, report: dict[str, Any]) -> bool:
    """Return True if the condition `expression` holds for `report` (a report dict).

    Raises
    ------
    InputError
        If the expression does not parse or its path is not in the report.
    """
    return check(expression, report)[0]
