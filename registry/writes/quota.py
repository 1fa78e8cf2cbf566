"""Quota checks of the write path: what a write adds to its namespace, against the namespace's limit.

Usage comes from the incremental ledger in the storage (``storage/usage.py``), so every replica sees the
same figure; the limit from ``NamespaceLimits`` (``storage.quotas``).  A push that would go over is
refused with DENIED: an upload as soon as it declares its size, a mount before it links, at the latest
the manifest.
"""

from __future__ import annotations

from registry.errors import RegistryError
from registry.mediatypes import ParsedManifest
from registry.writes.policy import NamespaceLimits
from storage.digests import Digest
from storage.metrics import quota_usage
from storage.usage import UsageLedger, namespace_of


class QuotaGuard:
    def __init__(self, ledger: UsageLedger, limits: NamespaceLimits) -> None:
        self.ledger = ledger
        self.limits = limits

    async def check(self, name: str, adding: int) -> None:
        """Refuse (DENIED) when ``adding`` more bytes would take the namespace of ``name`` over its limit."""
        if adding <= 0:
            return
        ns = namespace_of(name)
        limit = await self.limits.limit(ns)
        if limit is None:
            return
        used = await self.ledger.usage(ns)
        quota_usage(ns, used, limit)
        if used + adding > limit:
            raise RegistryError(
                "DENIED", f"quota exceeded: namespace {ns} stores {used} bytes of its {limit}; this push adds {adding}",
                detail={"namespace": ns, "usage": used, "limit": limit, "adding": adding},
            )

    async def check_blob(self, name: str, digest: Digest, size: int) -> None:
        """A blob linked into ``name`` adds its size unless the namespace counts it already."""
        if not await self.ledger.counted(name, digest):
            await self.check(name, size)

    async def check_manifest(self, name: str, digest: Digest, size: int, manifest: ParsedManifest) -> None:
        """What storing this manifest adds: the blobs it names that the namespace does not count yet
        (usually only the manifest itself: uploads and mounts count their blobs)."""
        adding = 0 if await self.ledger.counted(name, digest) else size
        for ref in [*manifest.blobs, *manifest.children]:
            if not ref.urls and not await self.ledger.counted(name, ref.digest):
                adding += ref.size
        await self.check(name, adding)
