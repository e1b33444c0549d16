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
    "lorahub.app",
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


def every_import(module: str) -> set[str]:
    """Every module `module` imports anywhere, inside functions too (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    checking = [n for n in ast.walk(tree) if isinstance(n, ast.If) and _is_type_checking(n)]
    skipped = {id(n) for block in checking for s in block.body for n in ast.walk(s)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            out.update(
                f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                for a in node.names
            )
    return out


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


def test_the_use_cases_sit_between_the_records_and_the_doors():
    """lorahub.app may import registry, inference and formats (heavy libraries only inside
    functions); nothing below it imports it, even inside a function, and it imports no door."""
    app = [m for m in MODULES if _under(m, ("lorahub.app",))]
    assert "lorahub.app.generate" in app and "lorahub.app.slots" in app
    heavy = [(m, t) for m, t in _edges("lorahub.app") if _under(t, HEAVY)]
    doors = [
        (m, t) for m in app for t in every_import(m) if _under(t, ("lorahub.server", "lorahub.cli"))
    ]
    below = [
        (m, t)
        for m in MODULES
        if _under(m, ("lorahub.formats", "lorahub.registry", "lorahub.inference"))
        for t in every_import(m)
        if _under(t, ("lorahub.app",))
    ]
    assert heavy == [] and doors == [] and below == []
    # the walk sees the imports inside functions (here the engine's, deferred on purpose)
    assert "lorahub.inference.pipelines" in every_import("lorahub.app.generate")
    assert "lorahub.inference.pipelines" not in GRAPH["lorahub.app.generate"]


# The modules below the use cases that still import the registry, and why (nothing else may).
REGISTRY_EXCEPTIONS = {
    # the registry's tag-name rule (a regex), so card tags the registry would refuse are dropped
    "lorahub.hub.pull": {"lorahub.registry.adapters"},
}


def test_ops_training_hub_and_inference_never_import_the_registry():
    """Registering a result is a use case (lorahub.app.register): the ops, the trainer and the
    engine return results and never import the registry, not even inside a function."""
    layers = ("lorahub.ops", "lorahub.training", "lorahub.hub", "lorahub.inference")
    bad = sorted(
        (m, t)
        for m in MODULES
        if _under(m, layers)
        for t in every_import(m)
        if _under(t, ("lorahub.registry",)) and t not in REGISTRY_EXCEPTIONS.get(m, set())
    )
    assert bad == []
    # every exception is still needed (a stale one would hide a new import)
    for m, allowed in REGISTRY_EXCEPTIONS.items():
        assert allowed <= every_import(m), m
    assert "lorahub.app.register" in MODULES and "lorahub.app.demo" in MODULES
    assert "lorahub.registry" in every_import("lorahub.app.register")


def test_only_the_trainers_public_entry_reaches_up_to_the_use_cases():
    """`lorahub.training.train(config)` keeps registering as before by running the use case
    lorahub.app.train (a deferred import); no other module of those layers imports lorahub.app."""
    layers = ("lorahub.ops", "lorahub.training", "lorahub.hub", "lorahub.inference")
    up = sorted(
        (m, t)
        for m in MODULES
        if _under(m, layers)
        for t in every_import(m)
        if _under(t, ("lorahub.app",))
    )
    assert up == [("lorahub.training", "lorahub.app.train")]
    assert "lorahub.app.train" not in GRAPH["lorahub.training"]
