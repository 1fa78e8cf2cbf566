"""Bytes each namespace stores and is uploading, kept incrementally in the storage (for quotas).

A namespace is the first component of a repository name (``team`` for ``team/app``).  A blob counts
once per namespace, however many of its repositories link it (as a layer or as a manifest); bytes of
unfinished upload sessions count too.  Per namespace the storage holds

    _moorage/usage/<ns>/base                       {"bytes": N} as of the last reconciliation (GC)
    _moorage/usage/<ns>/blobs/<alg>/<hex>          one marker per blob counted (its size)
    _moorage/usage/<ns>/log/<time>-<size>-<id>     bytes counted since then (a reservation, see below;
                                                   the object names the blobs it counts)
    _moorage/usage/<ns>/log/<time>-n<size>-<id>    bytes no longer counted (a blob unlinked everywhere)
    _moorage/usage/<ns>/log/<time>-u<size>-<id>    an upload session's bytes (its id; the newest per
                                                   session counts; the object holds the repository name)

so reading a namespace's usage costs one read and one listing, never a walk of the tree, and every
replica sees the same figure.

Quota decisions (registry/writes/quota.py) are made by **writing first and reading after** (no lock,
no compare-and-swap, which filesystems and S3 alike lack): a write that adds bytes writes its entry,
then lists the log; it goes ahead only if the total it read, its own entry included, is within the
limit, else it deletes its entry.  Of the writes that go ahead, the one whose entry came last read
every other's, so together they never exceed the limit (given read-after-write consistency, which
local filesystems and S3 have).  The ledger errs high in rare races (two repositories counting the
same new blob at once), never low, until the next GC reconciles it (``reconcile``: a fresh base from
the mark, markers of blobs no longer linked removed, the entries it covers deleted, the sessions that
ended forgotten).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from storage import paths
from storage.digests import Digest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.tree import RepositoryTree

UNCOUNTED = "n"  # entry kinds, the prefix of the size
UPLOADING = "u"
# a reservation is written before its blobs are linked: one this much older than a GC's start was
# linked before it (or never will be); a younger one GC's reconciliation keeps unless the mark saw its
# blobs linked
RESERVATION_SLACK = 60.0


def namespace_of(name: str) -> str:
    return name.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Usage:
    stored: int  # bytes of the blobs the namespace links (what ``du`` and /api/v1/usage count)
    uploading: int  # bytes in its unfinished upload sessions
    recent: int = 0  # of these, bytes other writes reserved or held lately (see ``figures``)

    @property
    def total(self) -> int:
        return self.stored + self.uploading


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # the object's name in the log
    at: float
    kind: str  # "" (counted), UNCOUNTED or UPLOADING
    size: int
    tail: str  # a random id; for an upload session, the session's id

    @classmethod
    def parse(cls, name: str) -> Entry | None:
        at, _, rest = name.partition("-")
        size, _, tail = rest.partition("-")
        kind = size[:1] if size[:1] in (UNCOUNTED, UPLOADING) else ""
        try:
            return cls(name, float(at), kind, int(size[len(kind):]), tail)
        except ValueError:
            return None


class UsageLedger:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.tree = RepositoryTree(driver)

    # --- reading -------------------------------------------------------------------------------------

    async def counted(self, name: str, digest: Digest) -> bool:
        """Whether the namespace of ``name`` counts the blob already."""
        try:
            await self.driver.stat(paths.usage_marker(namespace_of(name), digest))
        except PathNotFound:
            return False
        return True

    async def usage(self, ns: str) -> int:
        """The bytes the namespace stores and uploads."""
        return (await self.figures(ns)).total

    async def figures(self, ns: str, excluding: Collection[str] = (), since: float | None = None,
                      mine: str | None = None) -> Usage:
        """The namespace's bytes, leaving out the log entries named in ``excluding``; ``recent``: the
        bytes of entries written ``since`` then, other than ``mine`` (writes that may still withdraw)."""
        try:
            base = int(json.loads(await self.driver.get_content(paths.usage_base(ns)))["bytes"])
        except (PathNotFound, ValueError, KeyError, TypeError):
            base = 0
        stored, sessions = base, {}
        counted = []
        for entry in await self.entries(ns):
            if entry.name in excluding:
                continue
            if entry.kind == UPLOADING:
                newest = sessions.get(entry.tail)
                if newest is None or entry.at >= newest.at:
                    sessions[entry.tail] = entry
            else:
                stored += -entry.size if entry.kind == UNCOUNTED else entry.size
                counted.append(entry)
        recent = 0 if since is None else sum(
            e.size for e in [*counted, *sessions.values()] if e.kind != UNCOUNTED and e.at >= since and e.name != mine)
        return Usage(stored, sum(entry.size for entry in sessions.values()), recent)

    async def entries(self, ns: str) -> list[Entry]:
        try:
            names = await self.driver.list(paths.usage_log_dir(ns))
        except PathNotFound:
            return []
        return [entry for entry in map(Entry.parse, names) if entry is not None]

    # --- counting ------------------------------------------------------------------------------------

    async def reserve(self, name: str, size: int, blobs: Collection[Digest] = ()) -> str:
        """Count ``size`` more bytes of ``blobs`` that repository ``name`` links next; the entry's name,
        to withdraw it."""
        content = "\n".join([name, *map(str, blobs)]).encode()
        return await self._write(namespace_of(name), "", size, uuid.uuid4().hex[:12], content)

    async def withdraw(self, ns: str, entry: str) -> None:
        """Take back a reservation or a session's entry (the write was refused, or did not happen)."""
        try:
            await self.driver.delete_file(paths.usage_log_entry(ns, entry))
        except PathNotFound:
            pass

    async def mark(self, name: str, digest: Digest, size: int) -> bool:
        """The namespace of ``name`` now links the blob and a reservation counts it: mark it counted.

        False when it was marked already (another write counted it first): the caller withdraws its
        reservation of those bytes."""
        if await self.counted(name, digest):
            return False
        await self.driver.put_content(paths.usage_marker(namespace_of(name), digest), str(size).encode())
        return True

    async def add(self, name: str, digest: Digest, size: int) -> None:
        """Count a blob the namespace links now without deciding anything (the mirror's cache)."""
        if not await self.counted(name, digest):
            await self.reserve(name, size, [digest])
            await self.mark(name, digest, size)

    async def uncount(self, name: str, digest: Digest) -> bool:
        """The repository ``name`` no longer links the blob: uncount it unless another repository of the
        namespace still does (looked for after the marker is gone, so that a concurrent link either
        finds no marker and counts the blob again, or is found here).  True when uncounted."""
        ns = namespace_of(name)
        marker = paths.usage_marker(ns, digest)
        try:
            size = int(await self.driver.get_content(marker))
            await self.driver.delete_file(marker)
        except (PathNotFound, ValueError):
            return False  # not counted (or another delete is uncounting it)
        if await self.linked_in_namespace(ns, digest):
            await self.driver.put_content(marker, str(size).encode())
            return False
        await self._write(ns, UNCOUNTED, size, uuid.uuid4().hex[:12])
        return True

    async def linked_in_namespace(self, ns: str, digest: Digest) -> bool:
        """Whether a repository of the namespace links ``digest``, as a layer or a manifest (a walk of
        the namespace's repositories: deletes are rare)."""
        for marker in (paths.LAYERS, paths.MANIFESTS):
            names = [ns]
            async for other in self.tree.repositories(after=f"{ns}/", marker=marker):
                if not other.startswith(f"{ns}/"):
                    break
                names.append(other)
            for other in names:
                if await self._linked(other, digest):
                    return True
        return False

    # --- upload sessions -----------------------------------------------------------------------------

    async def hold(self, name: str, upload_id: str, size: int) -> str:
        """An upload session of ``name`` holds ``size`` bytes now (or is about to): its newest entry."""
        return await self._write(namespace_of(name), UPLOADING, size, upload_id, name.encode())

    async def session_entries(self, name: str, upload_id: str) -> list[str]:
        return [e.name for e in await self.entries(namespace_of(name)) if e.kind == UPLOADING and e.tail == upload_id]

    async def release(self, name: str, upload_id: str, keep: str | None = None) -> None:
        """Forget the session's entries (it completed, was cancelled or purged), all but ``keep``."""
        ns = namespace_of(name)
        for entry in await self.session_entries(name, upload_id):
            if entry != keep:
                await self.withdraw(ns, entry)

    async def _write(self, ns: str, kind: str, size: int, tail: str, content: bytes = b"") -> str:
        entry = f"{time.time():.6f}-{kind}{size}-{tail}"
        await self.driver.put_content(paths.usage_log_entry(ns, entry), content)
        return entry

    # --- reconciliation (GC) -------------------------------------------------------------------------

    async def reconcile(self, linked: Mapping[str, Mapping[Digest, int]], started: float) -> None:
        """Reset every namespace to what GC found linked when it started (``linked``: ns -> blob -> size).

        Markers and entries written since ``started`` stay (reservations a little older too): they may
        stand for links GC did not see.  Upload sessions' entries stay while their session does.
        """
        namespaces = set(linked)
        try:
            namespaces |= set(await self.driver.list(paths.USAGE))
        except PathNotFound:
            pass
        for ns in sorted(namespaces):
            blobs = linked.get(ns, {})
            base = {"bytes": sum(blobs.values()), "blobs": len(blobs), "at": started}
            old_markers: dict[Digest, float] = {}
            try:
                async for info in self.driver.walk(paths.usage_markers_dir(ns)):
                    parts = info.path.rsplit("/", 2)
                    if not info.is_dir and len(parts) == 3:
                        old_markers[Digest(parts[1].rsplit("/", 1)[-1], parts[2])] = info.modified
            except PathNotFound:
                pass
            for digest, size in blobs.items():
                if digest not in old_markers:
                    await self.driver.put_content(paths.usage_marker(ns, digest), str(size).encode())
            for digest, modified in old_markers.items():
                if digest not in blobs and modified < started:
                    await self.driver.delete_file(paths.usage_marker(ns, digest))
            await self.driver.put_content(paths.usage_base(ns), json.dumps(base).encode())
            for entry in await self.entries(ns):
                if entry.kind == UPLOADING:
                    if not await self._session_open(ns, entry):
                        await self.withdraw(ns, entry.name)
                elif entry.at < started and (entry.kind == UNCOUNTED or entry.at < started - RESERVATION_SLACK
                                             or await self._seen(ns, entry, blobs)):
                    await self.withdraw(ns, entry.name)  # the base has it, or its blobs went

    async def _seen(self, ns: str, entry: Entry, linked: Mapping[Digest, int]) -> bool:
        """Whether a recent reservation is covered: each of its blobs is in the base (GC found it linked)
        or is not linked (it went, or was never linked).  One linked since GC's mark keeps it."""
        try:
            name, *blobs = (await self.driver.get_content(paths.usage_log_entry(ns, entry.name))).decode().split()
            digests = [parse_digest(line) for line in blobs]
        except (PathNotFound, UnicodeDecodeError, ValueError):
            return True
        for digest in digests:
            if digest not in linked and await self._linked(name, digest):
                return False
        return True

    async def _linked(self, name: str, digest: Digest) -> bool:
        for link in (paths.layer_link(name, digest), paths.revision_link(name, digest)):
            try:
                await self.driver.stat(link)
                return True
            except PathNotFound:
                continue
        return False

    async def _session_open(self, ns: str, entry: Entry) -> bool:
        try:
            name = (await self.driver.get_content(paths.usage_log_entry(ns, entry.name))).decode()
            await self.driver.stat(paths.upload_started_at(name, entry.tail))
        except (PathNotFound, UnicodeDecodeError, ValueError):
            return False
        return True

