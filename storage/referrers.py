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
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore, ManifestUnknown

Describe = Callable[[bytes, Digest], "tuple[Digest, dict[str, Any]] | None"]


class ReferrersIndex:
    """``describe`` returns a stored manifest's subject and referrer descriptor, or None without one."""

    def __init__(self, driver: StorageDriver, manifests: ManifestStore, describe: Describe) -> None:
        self.driver = driver
        self.manifests = manifests
        self.describe = describe

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
        for algorithm, hex_ in await _digest_names(self.driver, paths.referrers_dir(name, subject)):
            try:
                referrer = parse_digest(f"{algorithm}:{hex_}")
            except InvalidDigest:
                continue
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
        found: set[str] = set()
        for algorithm, hex_ in await _digest_names(self.driver, paths.revisions_dir(name)):
            try:
                found.add(str(parse_digest(f"{algorithm}:{hex_}")))
            except InvalidDigest:
                continue
        return found

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
    pending = [""]
    while pending:
        prefix = pending.pop()
        children = await _names(index.driver, f"{paths.REPOSITORIES}/{prefix}".rstrip("/"))
        if "_manifests" in children and prefix:
            written += await index.catch_up(prefix.rstrip("/"), rescan=True)
        pending += [f"{prefix}{child}/" for child in children if not child.startswith("_")]
    return written


async def _digest_names(driver: StorageDriver, path: str) -> list[tuple[str, str]]:
    """The ``<alg>/<hex>`` entries below ``path`` in order (one listing on S3, not one per algorithm)."""
    try:
        entries = await driver.list_nested(path, 2)
    except PathNotFound:
        return []
    return [(algorithm, hex_) for algorithm, _, hex_ in (entry.partition("/") for entry in entries)]


async def _names(driver: StorageDriver, path: str) -> list[str]:
    try:
        return await driver.list(path)
    except PathNotFound:
        return []
