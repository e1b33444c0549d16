"""The layering of `lorahub/`, read statically from the source (nothing is imported).

Only imports that run when a module is imported count as edges: statements at module level,
including those inside module-level `if`/`try`/`with` blocks and class bodies, but not those inside
functions (the heavy and upward imports the house defers on purpose) and not `if TYPE_CHECKING:`
blocks. An import names the most specific lorahub module it reaches: `from lorahub.hub import
client` is an edge to `lorahub.hub.client`, `from lorahub.formats import open_adapter` one to the
package `lorahub.formats`; the parent packages Python runs on the way are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lorahub"
HEAVY = ("torch", "diffusers", "transformers", "peft", "nevergrad")
ABOVE_RECORDS = (
    "lorahub.inference",
    "lorahub.training",
    "lorahub.ops",
    "lorahub.server",
    "lorahub.hub",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time (functions skipped, TYPE_CHECKING skipped)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                out += _top_level_imports(node.body)
            out += _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                out += _top_level_imports(block)
            for handler in node.handlers:
                out += _top_level_imports(handler.body)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            out += _top_level_imports(node.body)
    return out


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imported_names(module: str) -> set[str]:
    """Every module (lorahub or third party) that `module` imports at import time."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in _top_level_imports(tree.body):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        target = _absolute(module, node)
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            out.add(sub if sub in MODULES else target)
    return out


GRAPH = {m: imported_names(m) for m in MODULES}


def _edges(prefix: str) -> list[tuple[str, str]]:
    inside = [m for m in GRAPH if m == prefix or m.startswith(prefix + ".")]
    return [(m, t) for m in inside for t in sorted(GRAPH[m])]


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def find_cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    lorahub_graph = {m: sorted(t for t in GRAPH[m] if t in MODULES) for m in GRAPH}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in lorahub_graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in lorahub_graph[node]:
                cycles.append(sorted(component))

    for node in sorted(lorahub_graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_walk_sees_the_package():
    assert "lorahub.formats" in MODULES and "lorahub.registry.registry" in MODULES
    assert "lorahub.hub.stage" in GRAPH["lorahub.hub.push"]  # a `from x import y` edge
    assert "lorahub.hub.client" in GRAPH["lorahub.hub.push"]  # a submodule named in `import`


def test_no_import_cycles_among_lorahub_modules():
    assert find_cycles() == []


def test_formats_and_registry_import_no_heavy_library_and_nothing_above_them():
    bad = [
        (m, t)
        for prefix in ("lorahub.formats", "lorahub.registry")
        for m, t in _edges(prefix)
        if _under(t, HEAVY) or _under(t, ABOVE_RECORDS)
    ]
    assert bad == []


def test_inference_imports_nothing_from_the_registry():
    bad = [(m, t) for m, t in _edges("lorahub.inference") if _under(t, ("lorahub.registry",))]
    assert bad == []


def test_families_imports_no_heavy_library_and_only_the_errors_below_it():
    assert "lorahub.families" in GRAPH
    lorahub_edges = {t for t in GRAPH["lorahub.families"] if _under(t, ("lorahub",))}
    heavy = {t for t in GRAPH["lorahub.families"] if _under(t, HEAVY)}
    assert heavy == set() and lorahub_edges <= {"lorahub.errors"}
