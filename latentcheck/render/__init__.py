"""Renderers: turn a finished report (or comparison) into text, JSON or Markdown.

Renderers only read result objects; one module per format.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["FORMATS", "Renderer", "render"]

FORMATS = ("text", "json", "markdown")


class Renderer(Protocol):
    """Something that renders a result object to a string."""

    def __call__(self, obj: Any) -> str:
        """Return `obj` rendered."""


def render(obj: Any, fmt: str, *, width: int = 100, max_dims: int = 64) -> str:
    """Return `obj` (a Report or Comparison) in format `fmt` (text, json or markdown)."""
    if fmt == "json":
        from .jsonreport import render_json

        return render_json(obj)
    if fmt == "markdown":
        return str(obj.to_markdown(max_dims=max_dims))
    if fmt == "text":
        return str(obj.to_text(width=width, max_dims=max_dims))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
