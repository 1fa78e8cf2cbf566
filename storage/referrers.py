"""The referrers index: for each subject, the descriptors of the manifests that name it.

It is derived data (every entry can be recomputed from the manifests' ``subject`` fields): entries are
written on manifest PUT, removed on DELETE, and checked against the revision links on every read so a
manifest deleted behind our back (by Distribution on the same storage) never shows up.
"""

from __future__ import annotations

import json
from typing import Any

from storage import paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore


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
