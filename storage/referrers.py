"""The referrers index: for each subject, the descriptors of the manifests that name it.

It is derived data (every entry can be recomputed from the manifests' ``subject`` fields): entries are
written on manifest PUT, removed on DELETE, and checked against the revision links on every read so a
manifest deleted behind our back (by Distribution on the same storage) never shows up.  Manifests
written behind our back are caught up on read: the revisions not yet listed in ``_scanned`` are parsed
once and indexed, so Distribution's pushes show up without a rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from storage import paths
from storage.digests import Digest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore, ManifestUnknown
from storage.tree import RepositoryTree

Describe = Callable[[bytes, Digest], "tuple[Digest, dict[str, Any]] | None"]


class ReferrersIndex:
    """``describe`` returns a stored manifest's subject and referrer descriptor, or None without one."""

    def __init__(self, driver: StorageDriver, manifests: ManifestStore, describe: Describe) -> None:
        self.driver = driver
        self.manifests = manifests
        self.describe = describe
        self.tree = RepositoryTree(driver)

    async def add(self, name: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]) -> None:
        content = json.dumps(descriptor, separators=(",", ":")).encode()
        await self.driver.put_content(paths.referrer_descriptor(name, subject, referrer), content)

    async def remove(self, name: str, subject: Digest, referrer: Digest) -> None:
        try:
            await self.driver.delete(paths.referrer_dir(name, subject, referrer))
        except PathNotFound:
            pass

    async def list(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        """Descriptors of live referrers, ordered by digest."""
        await self.catch_up(name)
        found: list[dict[str, Any]] = []
        for referrer in await self.tree.referrers(name, subject):
            if not await self.manifests.exists(name, referrer):
                continue
            try:
                raw = await self.driver.get_content(paths.referrer_descriptor(name, subject, referrer))
                found.append(json.loads(raw))
            except (PathNotFound, ValueError):
                continue
        return found

    async def catch_up(self, name: str, rescan: bool = False) -> int:
        """Index the repository's revisions not scanned before (all of them with ``rescan``).

        Concurrent catch-ups are harmless: each writes entries and a ``_scanned`` list that only name
        revisions it parsed itself. Returns the number of entries written.
        """
        revisions = await self._revisions(name)
        scanned = set() if rescan else await self._scanned(name)
        pending = sorted(revisions - scanned)
        if not pending:
            return 0
        written = 0
        for text in pending:
            digest = parse_digest(text)
            try:
                described = self.describe(await self.manifests.get(name, digest), digest)
            except ManifestUnknown:
                continue
            if described is not None:
                subject, descriptor = described
                await self.add(name, subject, digest, descriptor)
                written += 1
        await self.driver.put_content(paths.referrers_scanned(name), "\n".join(sorted(revisions)).encode())
        return written

    async def _revisions(self, name: str) -> set[str]:
        return {str(digest) for digest in await self.tree.revisions(name)}

    async def _scanned(self, name: str) -> set[str]:
        try:
            return set((await self.driver.get_content(paths.referrers_scanned(name))).decode().split())
        except PathNotFound:
            return set()


async def rebuild_referrers(index: ReferrersIndex) -> int:
    """Re-index every repository from its stored manifests (e.g. after Distribution wrote some).

    Returns the number of entries written.
    """
    written = 0
    async for name in index.tree.repositories():
        written += await index.catch_up(name, rescan=True)
    return written
