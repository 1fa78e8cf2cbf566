"""A mirrored repository: the upstream fills in what storage lacks, then it reads like any other.

Like Distribution's proxy blob and manifest stores, this sits under the /v2 handlers: they call the
same methods for a mirrored repository as for a local one and serve the answer the same way.
"""

from __future__ import annotations

from dataclasses import replace

from registry.mirror.source import STALE, STALE_WARNING, UpstreamRoute, UpstreamSource
from registry.mirror.upstream import UpstreamError, UpstreamNotFound
from registry.repository import Blob, Manifest, Repository, RepositoryUnknown, TagPage
from storage.digests import Digest


class MirroredRepository(Repository):
    def __init__(self, mirror: UpstreamSource, route: UpstreamRoute) -> None:
        super().__init__(route.local, mirror.driver, mirror.blobs, mirror.manifests, mirror.tags)
        self.mirror = mirror
        self.route = route

    async def manifest_by_tag(self, tag: str) -> Manifest:
        served = await self.mirror.manifest_by_tag(self.route, tag)
        return Manifest(served.digest, await self.manifests.get(self.name, served.digest), served.warning)

    async def manifest_by_digest(self, digest: Digest) -> Manifest:
        await self.mirror.manifest_by_digest(self.route, digest)
        return await super().manifest_by_digest(digest)

    async def blob(self, digest: Digest, body: bool) -> Blob:
        if body:
            spool = await self.mirror.blob(self.route, digest)
            if spool is not None:
                return Blob(spool.size, stored=False, stream=spool.reader)
        else:
            size = await self.mirror.blob_size(self.route, digest)
            if size is not None:
                return Blob(size, stored=False)
        return await super().blob(digest, body)

    async def tag_page(self, last: str | None, n: int | None) -> TagPage:
        """The upstream's page; what this mirror holds, marked stale, when the upstream fails."""
        query = {"n": str(n)} if n is not None else {}
        if last:
            query["last"] = last
        try:
            tags, more = await self.mirror.tag_list(self.route, query)
        except UpstreamNotFound:
            raise RepositoryUnknown(self.name) from None
        except UpstreamError as e:
            page = await super().tag_page(last, n)
            self.mirror.record("tags", self.route, "list", STALE, f" ({e})")
            return replace(page, warning=STALE_WARNING)
        return TagPage(tags, more)
