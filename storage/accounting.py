"""Storage accounting: the bytes each repository and namespace holds, shared blobs counted once.

A repository holds the blobs it links (layers, configs) and its manifests.  Its ``bytes`` count each
of them once; a namespace's (first name component) and the total count a blob once however many
repositories link it.  ``exclusive`` is what only that repository (namespace) holds among those the
report covers: for whoever sees every repository, about what deleting it and collecting garbage would
free.  Computed over what the caller may see, so that it tells nothing about repositories they may
not (a layer pushed into one's own repository is not "exclusive" merely because someone else's
repository, unseen, holds it too: that would be an oracle).

Reading what every repository links is a walk of the tree (``read_holdings``): one listing of the
layer links and one of the revisions per repository, and a stat per blob not seen before (a digest's
size never changes, so sizes carry over from one walk to the next).  The server does not walk per
request: ``UsageIndex`` keeps the last walk and walks again at most every ``max_age`` seconds, and
never more often than ten times its own duration, so however hard the usage is asked for, walking
costs at most a tenth of the time.  The walk is the same on every replica, so a change made through
any replica of a shared storage shows in every replica's figures within ``max_age`` (each answer says
how old its figures are).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

from storage import paths
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.gc import repository_names
from storage.tree import RepositoryTree
from storage.usage import namespace_of

MAX_AGE = 60.0
WALK_SHARE = 10  # a walk waits at least this many times its own duration after the previous one
YIELD_EVERY = 50  # repositories (or new blobs) between two turns the walk gives the event loop
REPORTS_KEPT = 64  # per-caller reports of the current walk


@dataclass(slots=True)
class Holding:
    name: str
    bytes: int = 0
    blobs: int = 0
    exclusive: int = 0  # bytes nothing else in the report holds

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "blobs": self.blobs, "exclusive": self.exclusive}


@dataclass(slots=True)
class UsageReport:
    total: Holding = field(default_factory=lambda: Holding(""))
    namespaces: list[Holding] = field(default_factory=list)
    repositories: list[Holding] = field(default_factory=list)
    taken_at: float = 0.0  # when the walk it comes from started (time.time())
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {"total": {"bytes": self.total.bytes, "blobs": self.total.blobs},
                "namespaces": [n.as_json() for n in self.namespaces],
                "repositories": [r.as_json() for r in self.repositories],
                "taken_at": round(self.taken_at, 3)}

    def encoded(self) -> bytes:
        """The JSON document, made once (a report of 10,000 repositories is a megabyte)."""
        if self._encoded is None:
            self._encoded = json.dumps(self.as_json(), separators=(",", ":")).encode()
        return self._encoded


@dataclass(frozen=True, slots=True)
class Holdings:
    """What every repository links (blobs whose data is missing left out), and the blobs' sizes."""

    repositories: dict[str, frozenset[Digest]]
    sizes: dict[Digest, int]
    taken_at: float


async def read_holdings(driver: StorageDriver, tree: RepositoryTree | None = None,
                        known: dict[Digest, int] | None = None) -> Holdings:
    """Walk the repositories; ``known`` sizes (of an earlier walk) are not asked again.

    Gives the event loop a turn every ``YIELD_EVERY`` repositories: filesystem reads that hit the
    listing cache answer without ever suspending, so a walk of 10,000 repositories would otherwise
    hold the loop for its whole duration.
    """
    taken_at = time.time()
    tree = tree or RepositoryTree(driver)
    known = known or {}
    linked: dict[str, frozenset[Digest]] = {}
    for i, name in enumerate(await repository_names(tree)):
        linked[name] = frozenset(await tree.layers(name)) | frozenset(await tree.revisions(name))
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    sizes: dict[Digest, int] = {}
    asked = 0
    for digest in {d for digests in linked.values() for d in digests}:
        size = known.get(digest)
        if size is None:
            try:
                size = (await driver.stat(paths.blob_data(digest))).size
            except PathNotFound:
                continue  # a link whose blob is gone (damage, or GC mid-way): nothing stored to count
            asked += 1
            if asked % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        sizes[digest] = size
    return Holdings({name: digests & sizes.keys() for name, digests in linked.items()}, sizes, taken_at)


def usage_of(holdings: Holdings, visible: Collection[str] | None = None) -> UsageReport:
    """The report over the ``visible`` repositories (all when None); ``exclusive`` among them only.

    Pure computation, O(links): callers run it off the event loop for large registries.
    """
    names = sorted(holdings.repositories if visible is None else set(visible) & holdings.repositories.keys())
    sizes = holdings.sizes
    repositories_of: dict[Digest, int] = {}
    namespaces_of: dict[Digest, set[str]] = {}
    for name in names:
        for digest in holdings.repositories[name]:
            repositories_of[digest] = repositories_of.get(digest, 0) + 1
            namespaces_of.setdefault(digest, set()).add(namespace_of(name))
    report = UsageReport(taken_at=holdings.taken_at)
    namespaces: dict[str, set[Digest]] = {}
    for name in names:
        present = holdings.repositories[name]
        report.repositories.append(Holding(
            name, sum(sizes[d] for d in present), len(present),
            sum(sizes[d] for d in present if repositories_of[d] == 1),
        ))
        namespaces.setdefault(namespace_of(name), set()).update(present)
    for ns in sorted(namespaces):
        present = namespaces[ns]
        report.namespaces.append(Holding(
            ns, sum(sizes[d] for d in present), len(present),
            sum(sizes[d] for d in present if len(namespaces_of[d]) == 1),
        ))
    report.total = Holding("", sum(sizes[d] for d in repositories_of), len(repositories_of))
    return report


async def usage_report(driver: StorageDriver, include: Callable[[str], Awaitable[bool]] | None = None) -> UsageReport:
    """One walk, reported over the repositories ``include`` selects (all without it), ``exclusive``
    over every repository: the operator's view (``moorage du``)."""
    holdings = await read_holdings(driver)
    report = usage_of(holdings)
    if include is not None:
        chosen = {name for name in holdings.repositories if await include(name)}
        report.repositories = [h for h in report.repositories if h.name in chosen]
        namespaces = {namespace_of(name) for name in chosen}
        report.namespaces = [h for h in report.namespaces if h.name in namespaces]
        digests = {d for name in chosen for d in holdings.repositories[name]}
        report.total = Holding("", sum(holdings.sizes[d] for d in digests), len(digests))
    return report


Offload = Callable[[Callable[[], UsageReport]], Awaitable[UsageReport]]


class UsageIndex:
    """The last walk of the repositories, walked again when asked for after ``max_age`` seconds.

    One walk at a time (concurrent callers wait for the same one); reports per caller are kept until
    the next walk.  ``offload`` runs the report's computation (its CPU) somewhere other than the loop.
    """

    def __init__(self, driver: StorageDriver, offload: Offload, max_age: float = MAX_AGE) -> None:
        self.driver = driver
        self.tree = RepositoryTree(driver)
        self.offload = offload
        self.max_age = max_age
        self._holdings: Holdings | None = None
        self._next_walk = 0.0  # time.monotonic() from which a walk may start again
        self._walking: asyncio.Future[Holdings] | None = None
        self._reports: OrderedDict[Hashable, UsageReport] = OrderedDict()  # by caller, of the current walk

    async def holdings(self) -> Holdings:
        if self._holdings is not None and time.monotonic() < self._next_walk:
            return self._holdings
        if self._walking is None:
            self._walking = asyncio.ensure_future(self._walk())
        walking = self._walking
        return await asyncio.shield(walking)  # a caller that gives up does not cancel the others' walk

    async def _walk(self) -> Holdings:
        started = time.monotonic()
        try:
            known = self._holdings.sizes if self._holdings is not None else None
            holdings = await read_holdings(self.driver, self.tree, known)
        finally:
            self._walking = None
        self._holdings = holdings
        self._next_walk = started + max(self.max_age, WALK_SHARE * (time.monotonic() - started))
        self._reports.clear()
        return holdings

    async def report(self, caller: Hashable, visible: Callable[[Collection[str]], Awaitable[Collection[str]]]
                     ) -> UsageReport:
        """The report over what ``visible`` keeps of all the repositories, for ``caller`` (whatever
        decides what they see: the same caller sees the same repositories until the next walk)."""
        holdings = await self.holdings()
        report = self._reports.get(caller) if self._holdings is holdings else None
        if report is None:
            seen = await visible(list(holdings.repositories))
            def compute() -> UsageReport:
                fresh = usage_of(holdings, seen)
                fresh.encoded()
                return fresh

            report = await self.offload(compute)
            if self._holdings is holdings:
                self._reports[caller] = report
                while len(self._reports) > REPORTS_KEPT:
                    self._reports.popitem(last=False)
        return report
