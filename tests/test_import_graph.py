"""Issue 17, stage 1: the report model imports no renderer, and the modules it concerns
import one another without cycles.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``
statement, at module level or inside a function, is an edge (a function-level import is
an import); only imports under ``if TYPE_CHECKING:`` are left out of the runtime graph,
and kept in the stricter graph of the owned modules.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Mapping, Set
from pathlib import Path

import latentcheck

PACKAGE = Path(latentcheck.__file__).parent
ROOT = "latentcheck"

#: cycles allowed (none since the reader registry broke io.persample <-> io.latents)
KNOWN_CYCLES: list[frozenset[str]] = []

#: the renderer registry and the render package's __init__ import no renderer; the model
#: may import them
NOT_RENDERERS = {"latentcheck.render", "latentcheck.render.registry"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _in_type_checking(tree: ast.AST) -> set[int]:
    """Return the ids of the import nodes under ``if TYPE_CHECKING:``."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                ids.update(id(x) for x in ast.walk(stmt))
    return ids


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Return the latentcheck modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        is_pkg = MODULES[module].name == "__init__.py"
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
        else:
            base = []
        stem = ".".join(base + ([node.module] if node.module else []))
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith(ROOT) and name != module:
            out.append(name)
    return out


@functools.cache
def import_graph(*, type_checking: bool) -> dict[str, frozenset[str]]:
    """Return module -> the latentcheck modules it imports (read once per session)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = set() if type_checking else _in_type_checking(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                graph[module].update(_targets(module, node))
    return {m: frozenset(ts) for m, ts in graph.items()}


def cycles(graph: Mapping[str, Set[str]]) -> list[frozenset[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _owned(module: str) -> bool:
    """Return True for the model and the renderers (report, comparison, model/, render/).

    ``metrics`` is left out of the stricter graph: ``Report.to_metrics`` imports it in a
    function and it imports ``Report`` and ``Comparison`` for type hints only.
    """
    return module in {
        "latentcheck.model.report",
        "latentcheck.comparison.api",
    } or module.startswith(("latentcheck.model", "latentcheck.render"))


def test_issue_17_the_graph_reader_sees_a_cycle():
    # the reader must be able to fail: a made-up cycle is found, a chain is not
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph(type_checking=False)
    assert "latentcheck.model.base" in graph["latentcheck.model.report"]
    assert "latentcheck.model.report" in graph["latentcheck.render.textreport"]


def test_issue_17_model_imports_no_renderer():
    graph = import_graph(type_checking=True)
    model = [m for m in MODULES if m.startswith("latentcheck.model")]
    for module in [*model, "latentcheck.model.report", "latentcheck.comparison.api"]:
        renderers = {
            t
            for t in graph[module]
            if t.startswith("latentcheck.render") and t not in NOT_RENDERERS
        }
        assert not renderers, f"{module} imports the renderers {sorted(renderers)}"
    # the registry and the package __init__ import no renderer either
    for module in NOT_RENDERERS:
        assert not {t for t in graph[module] if t.startswith("latentcheck.render.")} - {
            "latentcheck.render.registry"
        }


def test_issue_17_statistics_do_not_import_the_report():
    graph = import_graph(type_checking=True)
    for module, targets in graph.items():
        if module.startswith("latentcheck.stats"):
            assert "latentcheck.model.report" not in targets, module
            assert not any(t.startswith("latentcheck.render") for t in targets), module


def test_issue_17_no_cycles_among_the_model_and_renderers():
    # stricter: TYPE_CHECKING imports count too
    graph = import_graph(type_checking=True)
    owned = {m: {t for t in ts if _owned(t)} for m, ts in graph.items() if _owned(m)}
    assert cycles(owned) == []


def test_issue_17_no_import_cycles_but_the_known_ones():
    found = cycles(import_graph(type_checking=False))
    new = [sorted(c) for c in found if not any(c <= k for k in KNOWN_CYCLES)]
    assert not new, f"import cycles: {new}"
    assert not any(_owned(m) for c in found for m in c)


def test_issue_17_importing_the_report_loads_no_renderer():
    code = (
        "import sys, latentcheck.model.report, latentcheck.comparison.api, latentcheck.render;"
        "print(sorted(m for m in sys.modules if m.startswith('latentcheck.render')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['latentcheck.render', 'latentcheck.render.registry']"
