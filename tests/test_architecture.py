"""The house rules of issue 17, checked on the source: imports run one way, no private
names across modules, short functions and modules (no import cycles: test_import_graph.py).

These read the code as text (``ast``); nothing is imported. Tests of internals are
exempt: this looks only at the package ``latentcheck/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "latentcheck"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
#: a module over MAX_MODULE_LINES says why in its docstring, in a sentence with this phrase
LONG_MODULE_REASON = "than 600 lines"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _edges() -> dict[str, list[tuple[str, list[str], int]]]:
    """module -> [(imported module, names taken from it, line)] within the package."""
    edges: dict[str, list[tuple[str, list[str], int]]] = {m: [] for m in MODULES}
    for module, tree in TREES.items():
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        edges[module].append((alias.name, [], node.lineno))
                continue
            target = _resolve(module, node)
            if not target.startswith("latentcheck"):
                continue
            names = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    edges[module].append((sub, [], node.lineno))
                else:
                    names.append(alias.name)
            if names and target in MODULES:
                edges[module].append((target, names, node.lineno))
    return edges


EDGES = _edges()


def test_issue_17_the_renderer_registry_imports_no_renderer() -> None:
    """The seam the model may use stays a seam: it imports nothing of render/."""
    targets = {t for t, _, _ in EDGES["latentcheck.render.registry"]}
    assert not {t for t in targets if t.startswith("latentcheck.render.")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_issue_17_no_private_name_crosses_a_module() -> None:
    crossings = []
    for module, edges in EDGES.items():
        for target, names, line in edges:
            if target == module:
                continue
            last = target.rsplit(".", 1)[-1]
            if _private(last) and target != "latentcheck._version":
                crossings.append(f"{module}:{line} imports module {target}")
            crossings += [f"{module}:{line} imports {target}.{n}" for n in names if _private(n)]
    assert crossings == []


def _lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(body) > 1
    ):
        first = body[1]
    return int(node.end_lineno or 0) - first.lineno + 1


def test_issue_17_no_function_over_100_lines() -> None:
    long = [
        f"{module}.{node.name}: {_lines(node)} lines"
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _lines(node) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_issue_17_long_modules_say_why() -> None:
    long = []
    for module, path in MODULES.items():
        n = len(path.read_text().splitlines())
        doc = ast.get_docstring(TREES[module]) or ""
        if n > MAX_MODULE_LINES and LONG_MODULE_REASON not in doc:
            long.append(f"{module}: {n} lines")
    assert long == []


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("latentcheck.stats", "latentcheck.analysis"),
        ("latentcheck.stats", "latentcheck.render"),
        ("latentcheck.stats", "latentcheck.cli"),
        ("latentcheck.model", "latentcheck.render"),
        ("latentcheck.model", "latentcheck.analysis"),
        ("latentcheck.engine", "latentcheck.analysis"),
        ("latentcheck.render", "latentcheck.analysis"),
    ],
)
def test_issue_17_imports_run_one_way(low: str, high: str) -> None:
    """Lower layers never import higher ones (the README's module map).

    One seam is allowed: the model's ``to_text``/``to_markdown`` call the renderer
    registry, which imports no renderer (built-in ones load by name on first use; see its
    docstring), so the model still imports no renderer.
    """
    seams = {"latentcheck.render.registry"}
    wrong = [
        f"{module}:{line} imports {target}"
        for module, edges in EDGES.items()
        if module == low or module.startswith(low + ".")
        for target, _, line in edges
        if (target == high or target.startswith(high + ".")) and target not in seams
    ]
    assert wrong == []
