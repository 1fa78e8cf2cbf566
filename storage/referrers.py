"""The referrers index: for each subject, the descriptors of the manifests that name it.

It is derived data (every entry can be recomputed from the manifests' ``subject`` fields): entries are
written on manifest PUT, removed on DELETE, and checked against the revision links on every read so a
manifest deleted behind our back (by Distribution on the same storage) never shows up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from storage import paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore, ManifestUnknown


class ReferrersIndex:
    def __init__(self, driver: StorageDriver, manifests: ManifestStore) -> None:
        self.driver = driver
        self.manifests = manifests

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
        base = paths.referrers_dir(name, subject)
        found: list[dict[str, Any]] = []
        try:
            algorithms = await self.driver.list(base)
        except PathNotFound:
            return found
        for algorithm in algorithms:
            try:
                hexes = await self.driver.list(f"{base}/{algorithm}")
            except PathNotFound:
                continue
            for hex_ in hexes:
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


Describe = Callable[[bytes, Digest], "tuple[Digest, dict[str, Any]] | None"]


async def rebuild_referrers(driver: StorageDriver, manifests: ManifestStore, describe: Describe) -> int:
    """Re-create every index entry from the stored manifests (e.g. after Distribution wrote some).

    ``describe`` returns a manifest's subject and its referrer descriptor, or None when it has no
    subject. Returns the number of entries written.
    """
    index = ReferrersIndex(driver, manifests)
    written = 0
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            children = await driver.list(f"{paths.REPOSITORIES}/{prefix}".rstrip("/"))
        except PathNotFound:
            continue
        if "_manifests" in children and prefix:
            written += await _rebuild_repository(index, prefix.rstrip("/"), describe)
        pending += [f"{prefix}{child}/" for child in children if not child.startswith("_")]
    return written


async def _rebuild_repository(index: ReferrersIndex, name: str, describe: Describe) -> int:
    written = 0
    for algorithm in await _names(index.driver, paths.revisions_dir(name)):
        for hex_ in await _names(index.driver, f"{paths.revisions_dir(name)}/{algorithm}"):
            try:
                digest = parse_digest(f"{algorithm}:{hex_}")
                described = describe(await index.manifests.get(name, digest), digest)
            except (InvalidDigest, ManifestUnknown):
                continue
            if described is not None:
                subject, descriptor = described
                await index.add(name, subject, digest, descriptor)
                written += 1
    return written


async def _names(driver: StorageDriver, path: str) -> list[str]:
    try:
        return await driver.list(path)
    except PathNotFound:
        return []
