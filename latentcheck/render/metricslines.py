"""Metrics rendering: JSON lines, one ``{"name": ..., "value": ...}`` per metric (issue 18)."""

from __future__ import annotations

import json
from typing import Any

from .registry import RenderOptions, register

__all__ = ["render_metrics"]


def render_metrics(obj: Any, options: RenderOptions | None = None) -> str:
    """Return ``obj.to_metrics()`` as JSON lines (never NaN or Infinity)."""
    metrics = obj.to_metrics()
    return "".join(
        json.dumps({"name": k, "value": v}, allow_nan=False) + "\n" for k, v in metrics.items()
    )


register("report", "metrics")(render_metrics)
register("comparison", "metrics")(render_metrics)
