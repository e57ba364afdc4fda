"""HTML building blocks of the report page: escaped text, tables, paragraphs, sections.

Every text passes through :func:`esc`; the renderers of ``htmlreport`` and ``htmlblocks``
compose these and never write unescaped report text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["esc", "html_table", "kv_table", "para", "section"]


def esc(x: Any) -> str:
    """Return `x` as escaped HTML text."""
    return html.escape(str(x), quote=True)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Return an HTML table; headers and cells are plain text (escaped here)."""
    attr = f' class="{cls}"' if cls else ""
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{attr}>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def kv_table(rows: Sequence[tuple[str, str]]) -> str:
    """Return a two-column 'label: value' table."""
    body = "\n".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">\n<tbody>\n{body}\n</tbody>\n</table>'


def para(text: str, cls: str = "") -> str:
    """Return an escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def section(ident: str, title: str, body: Sequence[str]) -> str:
    """Return a section with an h2 title."""
    inner = "\n".join(b for b in body if b)
    return f'<section id="{ident}">\n<h2>{esc(title)}</h2>\n{inner}\n</section>'
