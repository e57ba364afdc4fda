"""The renderer registry: output formats by name, one module per format.

A renderer is a function ``(obj, options) -> str`` registered for a kind of result
(``"report"`` or ``"comparison"``, the ``render_kind`` of the result class) and a format
name with :func:`register`. Each module of ``render/`` registers its own renderers when it
is imported; a new output format is one new module here that calls :func:`register`, plus
its name in :data:`BUILTIN_MODULES` (or, outside latentcheck, a call to :func:`register`).

Why there is no import cycle. The model (``report``, ``comparison``, ``model/``) calls
:func:`render` of this module, which imports nothing of latentcheck but ``errors``; the
renderers import the model. The built-in renderer modules are loaded on first use by
their names in :data:`BUILTIN_MODULES` (``importlib``, as entry points are), so no module,
at top level or in a function, imports both ways: the edges are model → registry ←
renderer → model, a graph without a cycle, checked by ``tests/test_import_graph.py``.
Loading by name on first use also keeps ``import latentcheck`` free of numpy and
matplotlib, as ``__init__`` promises.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InputError

__all__ = [
    "BUILTIN_MODULES",
    "FORMATS",
    "RenderOptions",
    "Renderer",
    "available_formats",
    "get_renderer",
    "register",
    "render",
    "unregister",
]

#: The output formats the command line offers, in the order of its help.
FORMATS = ("text", "json", "markdown", "html", "metrics")

#: Modules of ``latentcheck.render`` that register the built-in renderers.
BUILTIN_MODULES = (
    "textreport",
    "markdownreport",
    "htmlreport",
    "jsonreport",
    "comparetext",
    "metricslines",
)

#: The built-in modules that register each format, imported alone for it: the JSON
#: report does not import the HTML renderer's plotting helpers (issue 22). A format not
#: named here (a new module's) loads every module of BUILTIN_MODULES.
FORMAT_MODULES = {
    "text": ("textreport", "comparetext"),
    "verdict": ("textreport",),
    "summary": ("textreport",),
    "markdown": ("markdownreport", "comparetext"),
    "html": ("htmlreport",),
    "notebook": ("htmlreport",),
    "json": ("jsonreport",),
    "metrics": ("metricslines",),
}

#: Plural words of the result kinds, for messages.
KIND_WORDS = {"report": "reports", "comparison": "comparisons"}


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Layout options every renderer receives (each uses those that apply to it).

    Attributes
    ----------
    width : int
        Text width in columns (text formats).
    max_dims : int
        Show at most this many dimensions in per-dimension tables.
    precision : int
        Significant digits of numbers (text report).
    """

    width: int = 100
    max_dims: int = 64
    precision: int = 3


class Renderer(Protocol):
    """A function that renders a result object to a string."""

    def __call__(self, obj: Any, options: RenderOptions, /) -> str:
        """Return `obj` rendered."""


_REGISTRY: dict[tuple[str, str], Renderer] = {}
#: The built-in modules imported so far.
_LOADED: set[str] = set()


def register(kind: str, fmt: str) -> Callable[[Renderer], Renderer]:
    """Return a decorator that registers a renderer of results of `kind` in format `fmt`.

    A later registration of the same kind and format replaces the earlier one.
    """

    def decorate(fn: Renderer) -> Renderer:
        _REGISTRY[(kind, fmt)] = fn
        return fn

    return decorate


def unregister(kind: str, fmt: str) -> None:
    """Remove the renderer of `kind` in `fmt` (no error when there is none)."""
    _REGISTRY.pop((kind, fmt), None)


def _load_builtins(fmt: str | None = None) -> None:
    """Import the built-in renderer modules of `fmt` (all of them for None) once.

    Each registers its renderers when imported; a user's renderer registered before
    keeps its place.
    """
    names = FORMAT_MODULES.get(fmt, BUILTIN_MODULES) if fmt is not None else BUILTIN_MODULES
    todo = [name for name in names if name not in _LOADED]
    if not todo:
        return
    registered_first = dict(_REGISTRY)  # a user's renderer registered before first use wins
    for name in todo:
        importlib.import_module(f"{__package__}.{name}")
        _LOADED.add(name)
    _REGISTRY.update(registered_first)


def available_formats(kind: str | None = None) -> tuple[str, ...]:
    """Return the registered format names (of results of `kind`, or of any kind), sorted."""
    _load_builtins()
    return tuple(sorted({f for k, f in _REGISTRY if kind is None or k == kind}))


def get_renderer(kind: str, fmt: str) -> Renderer:
    """Return the renderer of results of `kind` in format `fmt`.

    Raises
    ------
    InputError
        If the format exists for other kinds of results only.
    ValueError
        If no kind of result has the format.
    """
    _load_builtins(fmt)
    fn = _REGISTRY.get((kind, fmt))
    if fn is not None:
        return fn
    _load_builtins()
    others = sorted(k for k, f in _REGISTRY if f == fmt)
    if others:
        label = "HTML" if fmt == "html" else fmt
        have = ", ".join(KIND_WORDS.get(k, k) for k in others)
        raise InputError(
            f"{label} output is available for {have}, not {KIND_WORDS.get(kind, kind)}"
        )
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(available_formats(kind))}")


def render(obj: Any, fmt: str, *, width: int = 100, max_dims: int = 64, precision: int = 3) -> str:
    """Return `obj` (a Report or Comparison) in format `fmt` (see :func:`available_formats`)."""
    kind = getattr(type(obj), "render_kind", type(obj).__name__)
    options = RenderOptions(width=width, max_dims=max_dims, precision=precision)
    return get_renderer(str(kind), fmt)(obj, options)
