"""HTTP handlers and the web UI change repositories only through the write path: no module under
``registry/api/`` or ``registry/ui/`` calls a store's (or the driver's) writing method itself."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.storewrites import WRITING

ROOT = Path(__file__).parents[2]


def store_writes(source: str) -> list[str]:
    """``receiver.store.method`` of every call of a store's writing method in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            store = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", None)
            if store in WRITING and node.func.attr in WRITING[store][1]:
                found.append(f"{ast.unparse(node.func)} (line {node.lineno})")
    return found


def test_the_lists_name_real_methods_and_the_check_finds_calls() -> None:
    for store, (cls, methods) in WRITING.items():
        assert all(callable(getattr(cls, m, None)) for m in methods), store
    assert store_writes("async def f(registry, blobs):\n    await registry.blobs.link(n, d)\n"
                        "    await self.registry.tags.untag(n, t)\n    await blobs.put(d, b)\n"
                        "    await registry.tags.resolve(n, t)\n") == [
        "registry.blobs.link (line 2)", "self.registry.tags.untag (line 3)", "blobs.put (line 4)"]


def test_api_and_ui_write_only_through_the_write_path() -> None:
    modules = [*sorted((ROOT / "registry/api").rglob("*.py")), *sorted((ROOT / "registry/ui").rglob("*.py"))]
    assert len(modules) > 10
    offending = {str(p.relative_to(ROOT)): calls for p in modules if (calls := store_writes(p.read_text()))}
    assert offending == {}
