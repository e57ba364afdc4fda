"""Number and layout formatting shared by the text, Markdown and HTML renderers.

Numbers get `precision` significant digits, NaN and None print as '-', p-values compactly;
``wrap`` and ``table`` lay out plain text. Formatting only: nothing here reads a report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["fmt", "pct", "pval", "table", "wrap"]


def fmt(x: Any, precision: int = 3) -> str:
    """Return a number with `precision` significant digits ('-' for NaN, None)."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 10**precision <= abs(x) < 1e6:
        return f"{x:.0f}"  # 1234 rather than 1.23e+03
    text = f"{x:#.{precision}g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = mant.rstrip(".") + "e" + exp
    return text.rstrip(".")


def pct(x: Any, precision: int = 3) -> str:
    """Return a fraction as a percentage string."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt(100.0 * float(x), precision) + "%"


def pval(p: Any) -> str:
    """Return a p-value compactly (<1e-300 for underflow)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    p = float(p)
    if p == 0:
        return "<1e-300"
    if p < 1e-3:
        return f"{p:.0e}"
    return f"{p:.3f}"


def wrap(text: str, width: int, indent: str = "", first: str = "") -> list[str]:
    """Return `text` wrapped to `width` columns, `first` before line 1, `indent` after."""
    import textwrap

    return textwrap.wrap(
        text, width=width, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
    ) or [first.rstrip()]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """Return a plain-text table; numbers right-aligned, first column left-aligned."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i])
            for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]
