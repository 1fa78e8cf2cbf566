"""Bytes each namespace stores, kept up to date incrementally in the storage (for quotas).

A namespace is the first component of a repository name (``team`` for ``team/app``).  A blob counts
once per namespace, however many of its repositories link it.  Per namespace the storage holds

    _moorage/usage/<ns>/base                      {"bytes": N} as of the last reconciliation (GC)
    _moorage/usage/<ns>/blobs/<alg>/<hex>         one marker per blob counted (its size)
    _moorage/usage/<ns>/log/<time>-<size>-<id>    one entry per blob counted since then

so that linking a blob costs a stat (and two small writes the first time the namespace gets it), and
reading a namespace's usage costs one read and one listing of a short log, never a walk of the tree.
Two replicas linking the same new blob at once may both count it: usage errs high until GC reconciles
it (``reconcile``: a fresh base from the mark, markers of blobs no longer linked removed, the log
entries it covers deleted).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

from storage import paths
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver


def namespace_of(name: str) -> str:
    return name.split("/", 1)[0]


class UsageLedger:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def add(self, name: str, digest: Digest, size: int | None = None) -> None:
        """The repository ``name`` now links the blob: count it for its namespace unless it is already."""
        ns = namespace_of(name)
        marker = paths.usage_marker(ns, digest)
        try:
            await self.driver.stat(marker)
            return
        except PathNotFound:
            pass
        if size is None:
            try:
                size = (await self.driver.stat(paths.blob_data(digest))).size
            except PathNotFound:
                return
        await self.driver.put_content(marker, str(size).encode())
        entry = paths.usage_log_entry(ns, f"{time.time():.6f}-{size}-{uuid.uuid4().hex[:12]}")
        await self.driver.put_content(entry, b"")

    async def counted(self, name: str, digest: Digest) -> bool:
        """Whether the namespace of ``name`` counts the blob already."""
        try:
            await self.driver.stat(paths.usage_marker(namespace_of(name), digest))
        except PathNotFound:
            return False
        return True

    async def usage(self, ns: str) -> int:
        try:
            base = int(json.loads(await self.driver.get_content(paths.usage_base(ns)))["bytes"])
        except (PathNotFound, ValueError, KeyError, TypeError):
            base = 0
        try:
            entries = await self.driver.list(paths.usage_log_dir(ns))
        except PathNotFound:
            entries = []
        return base + sum(_entry_size(entry) for entry in entries)

    async def reconcile(self, linked: Mapping[str, Mapping[Digest, int]], started: float) -> None:
        """Reset every namespace to what GC found linked when it started (``linked``: ns -> blob -> size).

        Markers and log entries written since ``started`` stay: they may stand for links GC did not see.
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
            try:
                entries = await self.driver.list(paths.usage_log_dir(ns))
            except PathNotFound:
                entries = []
            for entry in entries:
                if _entry_time(entry) < started:
                    await self.driver.delete_file(paths.usage_log_entry(ns, entry))


def _entry_size(entry: str) -> int:
    try:
        return int(entry.split("-")[1])
    except (IndexError, ValueError):
        return 0


def _entry_time(entry: str) -> float:
    try:
        return float(entry.split("-")[0])
    except ValueError:
        return 0.0
