"""The packages' import graph: no cycle anywhere (imports inside functions count), and the direction the
README states (``registry`` -> ``storage``, ``auth``; everything -> ``configkit``; nothing back)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("registry", "storage", "auth", "configkit")
# may import (besides itself); auth -> storage.database only (the database layer)
ALLOWED = {"registry": {"storage", "auth", "configkit"}, "storage": {"configkit"},
           "auth": {"configkit", "storage.database", "storage.background"}, "configkit": set()}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module an import statement names (outside ``if TYPE_CHECKING:``), relative ones resolved."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and type_checking_only(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield from (f"{base}:{alias.name}" for alias in node.names)  # a name or a submodule of base
        pending.extend(ast.iter_child_nodes(node))


def graph(parents: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of these packages it makes Python run.  Importing ``a.b.c`` runs ``a`` and
    ``a.b`` (the package ``__init__``s) first, unless they are the importer's own packages, which are
    running already (``parents`` false: only the modules named); ``from a import name`` runs ``a.name``
    when that is a module, else needs ``a``."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets = set()
        for name in imported(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            base, _, member = name.partition(":")
            target = f"{base}.{member}" if f"{base}.{member}" in known else base
            parts = target.split(".")
            if parents:
                targets |= {".".join(parts[:i]) for i in range(1, len(parts))} - own
            targets.add(target)
        edges[module] = (targets & known.keys()) - {module}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("import x.y\nfrom . import z\nif TYPE_CHECKING:\n    import hidden\ndef f():\n    from .w import v")
    assert set(imported(tree, "p.m", False)) == {"x.y", "p:z", "p.w:v"}


def test_no_import_cycle() -> None:
    edges = graph()
    assert len(edges) > 100 and "registry.writes.writer" in edges
    assert cycles(edges) == []


def test_imports_run_in_the_stated_direction() -> None:
    wrong = []
    for module, targets in graph(parents=False).items():
        package = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != package and not any(target == a or target.startswith(f"{a}.") for a in ALLOWED[package]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []
