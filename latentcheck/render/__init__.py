"""Renderers: turn a finished report (or comparison) into text, JSON, Markdown or HTML.

Renderers only read result objects; one module per format.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["FORMATS", "Renderer", "render"]

FORMATS = ("text", "json", "markdown", "html", "metrics")


class Renderer(Protocol):
    """Something that renders a result object to a string."""

    def __call__(self, obj: Any) -> str:
        """Return `obj` rendered."""


def render(obj: Any, fmt: str, *, width: int = 100, max_dims: int = 64) -> str:
    """Return `obj` (a Report or Comparison) in format `fmt` (one of :data:`FORMATS`)."""
    if fmt == "json":
        from .jsonreport import render_json

        return render_json(obj)
    if fmt == "markdown":
        return str(obj.to_markdown(max_dims=max_dims))
    if fmt == "html":
        to_html = getattr(obj, "to_html", None)
        if to_html is None:
            from ..errors import InputError

            raise InputError("HTML output is available for reports, not comparisons")
        return str(to_html(max_dims=max_dims))
    if fmt == "text":
        return str(obj.to_text(width=width, max_dims=max_dims))
    if fmt == "metrics":  # JSON lines, one {"name": ..., "value": ...} per metric (issue 18)
        import json

        metrics = obj.to_metrics()
        return "".join(
            json.dumps({"name": k, "value": v}, allow_nan=False) + "\n" for k, v in metrics.items()
        )
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
