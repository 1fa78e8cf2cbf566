"""Storage accounting: the bytes each repository and namespace holds, shared blobs counted once.

A repository holds the blobs it links (layers, configs) and its manifests.  Its ``bytes`` count each
of them once; a namespace's (first name component) and the total count a blob once however many
repositories link it.  ``exclusive`` is what only that repository (namespace) holds: about what
deleting it and collecting garbage would free.  One walk of the repositories (storage/tree.py) and
one of ``blobs/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from storage.digests import Digest
from storage.driver import StorageDriver
from storage.gc import repository_names
from storage.tree import RepositoryTree
from storage.usage import namespace_of


@dataclass(slots=True)
class Holding:
    name: str
    bytes: int = 0
    blobs: int = 0
    exclusive: int = 0  # bytes nothing outside it holds

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "blobs": self.blobs, "exclusive": self.exclusive}


@dataclass(slots=True)
class UsageReport:
    total: Holding = field(default_factory=lambda: Holding(""))
    namespaces: list[Holding] = field(default_factory=list)
    repositories: list[Holding] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"total": {"bytes": self.total.bytes, "blobs": self.total.blobs},
                "namespaces": [n.as_json() for n in self.namespaces],
                "repositories": [r.as_json() for r in self.repositories]}


async def usage_report(driver: StorageDriver, include: Callable[[str], Awaitable[bool]] | None = None) -> UsageReport:
    """Usage of the repositories ``include`` selects (all without it); ``exclusive`` looks at every
    repository."""
    tree = RepositoryTree(driver)
    holders: dict[str, set[Digest]] = {}
    for name in await repository_names(tree):
        holders[name] = set(await tree.layers(name)) | set(await tree.revisions(name))
    sizes: dict[Digest, int] = {}
    async for digest, size, _, _ in tree.blob_files():
        if digest is not None:
            sizes[digest] = size
    repositories_of: dict[Digest, int] = {}
    namespaces_of: dict[Digest, set[str]] = {}
    for name, digests in holders.items():
        for digest in digests:
            repositories_of[digest] = repositories_of.get(digest, 0) + 1
            namespaces_of.setdefault(digest, set()).add(namespace_of(name))
    report = UsageReport()
    namespaces: dict[str, set[Digest]] = {}
    everything: set[Digest] = set()
    for name in sorted(holders):
        if include is not None and not await include(name):
            continue
        present = {d for d in holders[name] if d in sizes}
        report.repositories.append(Holding(
            name, sum(sizes[d] for d in present), len(present),
            sum(sizes[d] for d in present if repositories_of[d] == 1),
        ))
        namespaces.setdefault(namespace_of(name), set()).update(present)
        everything |= present
    for ns in sorted(namespaces):
        present = namespaces[ns]
        report.namespaces.append(Holding(
            ns, sum(sizes[d] for d in present), len(present),
            sum(sizes[d] for d in present if namespaces_of[d] == {ns}),
        ))
    report.total = Holding("", sum(sizes[d] for d in everything), len(everything))
    return report
