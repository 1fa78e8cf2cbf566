"""One repository as the /v2 read handlers see it: its manifests, blobs and tags, bound to its name (the
read path).

``Repository`` reads what storage holds.  A mirrored namespace gets ``MirroredRepository``
(``registry/mirror/repository.py``), which first has the upstream fill in what storage lacks or what
went stale, then reads the same way.  So the handlers serve local and mirrored content through one
code path, as Distribution's proxy stores sit under its handlers, not over them.  Writes take the other
road, ``RepositoryWriter`` (``registry/writes/writer.py``), for every repository alike.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from storage.blobs import BlobStore
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore, TagStore, repository_exists


class RepositoryUnknown(Exception):
    """No such repository (nothing was ever pushed to it, or its source does not know it)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: Digest
    content: bytes
    warning: str | None = None  # for a ``Warning`` header: a stale copy, its source could not be asked


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob to serve: from storage, or (``stored`` false) as it arrives from the repository's source."""

    size: int | None  # None: the source has not said
    stored: bool = True
    # bytes [offset, offset+length) of a blob not stored yet; None for HEAD.  Call it before the next
    # await: a download that finishes meanwhile leaves no spool to read (the blob is then stored).
    stream: Callable[[int, int | None], AsyncIterator[bytes]] | None = None


@dataclass(frozen=True, slots=True)
class TagPage:
    tags: list[str]
    more: bool  # tags follow this page
    warning: str | None = None


@dataclass
class Repository:
    """A repository whose content is what storage holds."""

    name: str
    driver: StorageDriver
    blobs: BlobStore
    manifests: ManifestStore
    tags: TagStore

    async def manifest_by_tag(self, tag: str) -> Manifest:
        """Raises TagUnknown or ManifestUnknown."""
        digest = await self.tags.resolve(self.name, tag)
        return Manifest(digest, await self.manifests.get(self.name, digest))

    async def manifest_by_digest(self, digest: Digest) -> Manifest:
        """Raises ManifestUnknown."""
        return Manifest(digest, await self.manifests.get(self.name, digest))

    async def blob(self, digest: Digest, body: bool) -> Blob:
        """The blob if the repository links it (raises BlobUnknown); ``body`` false for a HEAD, whose 200
        lets a pushing client skip its upload: then the data is checked in storage, not in a cache."""
        return Blob(await self.blobs.stat_in_repository(self.name, digest, check=not body))

    async def tag_page(self, last: str | None, n: int | None) -> TagPage:
        """Up to ``n`` tags (all when None) after ``last``, in lexical order; raises RepositoryUnknown."""
        try:
            if n is None:
                tags = await self.tags.list(self.name)
                return TagPage(tags[bisect_right(tags, last) :] if last else tags, more=False)
            tags, more = await self.tags.page(self.name, last, n)
            return TagPage(tags, more)
        except PathNotFound:
            if not await repository_exists(self.driver, self.name):
                raise RepositoryUnknown(self.name) from None
            return TagPage([], more=False)
