"""Renderers: turn a finished report (or comparison) into text, JSON, Markdown or HTML.

Renderers only read result objects; one module per format, each registering itself in
:mod:`latentcheck.render.registry` (see there why the model and the renderers import
each other in one direction only). This package imports no renderer itself.
"""

from __future__ import annotations

from .registry import FORMATS as FORMATS
from .registry import Renderer as Renderer
from .registry import RenderOptions as RenderOptions
from .registry import available_formats as available_formats
from .registry import register as register
from .registry import render as render

__all__ = ["FORMATS", "RenderOptions", "Renderer", "available_formats", "register", "render"]
