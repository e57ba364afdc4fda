"""JSON rendering: ``schema_version`` first, no NaN or Infinity ever written."""

from __future__ import annotations

import json
from typing import Any

from .registry import RenderOptions, register

__all__ = ["render_json"]


def render_json(obj: Any, *, indent: int | None = 2) -> str:
    """Return `obj.to_dict()` as JSON text; ``allow_nan=False`` makes invalid JSON impossible."""
    return json.dumps(obj.to_dict(), indent=indent, allow_nan=False) + "\n"


@register("report", "json")
@register("comparison", "json")
def _render(obj: Any, options: RenderOptions) -> str:
    """Return (as the registered renderer) the JSON text (layout options do not apply)."""
    return render_json(obj)
