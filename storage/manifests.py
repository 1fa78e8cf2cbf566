"""Manifest revisions and tags of a repository, stored as Distribution stores them."""

from __future__ import annotations

import os
from collections import OrderedDict

from storage import paths
from storage.blobs import BlobStore, BlobUnknown, read_link
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver

CACHE_ENTRIES = 4096
CACHE_MAX_BYTES = 64 << 10


class ManifestUnknown(Exception):
    """No such manifest revision in the repository."""


class TagUnknown(Exception):
    """No such tag in the repository."""


class ManifestStore:
    """Manifest content lives in the blob store; ``_manifests/revisions`` links it to a repository."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore) -> None:
        self.driver = driver
        self.blobs = blobs
        # content is immutable per digest, so small manifests are cached; membership is always checked
        self._content: OrderedDict[Digest, bytes] = OrderedDict()

    async def exists(self, name: str, digest: Digest) -> bool:
        return await read_link(self.driver, paths.revision_link(name, digest)) == digest

    async def get(self, name: str, digest: Digest) -> bytes:
        if not await self.exists(name, digest):
            raise ManifestUnknown(str(digest))
        cached = self._content.get(digest)
        if cached is not None:
            self._content.move_to_end(digest)
            return cached
        try:
            content = await self.blobs.get(digest)
        except BlobUnknown:
            raise ManifestUnknown(str(digest)) from None
        self._remember(digest, content)
        return content

    async def put(self, name: str, digest: Digest, content: bytes) -> None:
        """The content (unless known to be stored) and then the revision link, durable together in one
        write.  Rewriting content that is there already costs what asking would (S3: one request)."""
        items = []
        view = await self.blobs.watch.view()
        if not await self.blobs.known(digest):
            items.append((paths.blob_data(digest), content))
        link = paths.revision_link(name, digest)
        items.append((link, str(digest).encode()))
        await self.driver.put_contents(items)
        self.blobs.remember(digest, len(content), view)
        self._remember(digest, content)

    async def relied_on(self, name: str, digest: Digest) -> None:
        """A push in ``name`` relies on this stored manifest (an index lists it): a collector running now
        spares it (docs/gc.md)."""
        await self.blobs.guard.relied_on(relied_directories(name, digest))

    async def stored(self, name: str, digest: Digest) -> bool:
        """The revision link and the content are in storage (asked there, not from a cache)."""
        try:
            await self.driver.stat_file(paths.blob_data(digest))
        except PathNotFound:
            return False
        return await read_link(self.driver, paths.revision_link(name, digest)) == digest

    async def restore(self, name: str, digest: Digest, content: bytes) -> None:
        """Store the revision again unless it is there (a collector removed it while it was pushed)."""
        if not await self.stored(name, digest):
            await self.driver.put_contents([(paths.blob_data(digest), content),
                                            (paths.revision_link(name, digest), str(digest).encode())])

    async def delete(self, name: str, digest: Digest) -> None:
        try:
            await self.driver.delete(paths.revision_dir(name, digest))
        except PathNotFound:
            raise ManifestUnknown(str(digest)) from None

    def _remember(self, digest: Digest, content: bytes) -> None:
        if len(content) > CACHE_MAX_BYTES:
            return
        self._content[digest] = content
        if len(self._content) > CACHE_ENTRIES:
            self._content.popitem(last=False)


class TagStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def resolve(self, name: str, tag: str) -> Digest:
        digest = await read_link(self.driver, paths.tag_current_link(name, tag))
        if digest is None:
            raise TagUnknown(tag)
        return digest

    async def tag(self, name: str, tag: str, digest: Digest) -> None:
        """Point ``tag`` at ``digest``; the index entry first, as Distribution does."""
        link = str(digest).encode()
        await self.driver.put_contents([(paths.tag_index_link(name, tag, digest), link),
                                        (paths.tag_current_link(name, tag), link)])

    async def restore(self, name: str, tag: str, digest: Digest) -> None:
        """Point the tag at ``digest`` again if it went (retention removed it while it was pushed); a tag
        pushed again meanwhile stays as it is."""
        if await read_link(self.driver, paths.tag_current_link(name, tag)) is None:
            await self.tag(name, tag, digest)

    async def untag(self, name: str, tag: str) -> None:
        try:
            await self.driver.delete(paths.tag_dir(name, tag))
        except PathNotFound:
            raise TagUnknown(tag) from None

    async def list(self, name: str) -> list[str]:
        """Tags in lexical order; raises PathNotFound when the repository has no tags directory.

        Only tags with a current link: a write killed after the index link (or, on disk, with the
        ``current`` directory made but no link in it yet) leaves a tag that was never acknowledged.
        """
        directory = paths.tags_dir(name)
        local = self.driver.local_path
        if local(directory) is not None:
            names = await self.driver.list(directory)
            return [tag for tag in names if os.path.isfile(str(local(paths.tag_current_link(name, tag))))]
        nested = await self.driver.list_nested(directory, 3)  # one listing per 1,000 keys on S3
        return [entry.split("/", 1)[0] for entry in nested if entry.endswith(f"/{paths.TAG_CURRENT_LINK}")]

    async def pushed_at(self, name: str, tag: str) -> float | None:
        """When ``tag`` was last pointed at a manifest (its link's modification time); None if untagged."""
        try:
            return (await self.driver.stat(paths.tag_current_link(name, tag))).modified
        except PathNotFound:
            return None

    async def tags_of(self, name: str, digest: Digest) -> list[str]:
        """Tags currently pointing at ``digest`` (a scan over the repository's tags)."""
        try:
            tags = await self.list(name)
        except PathNotFound:
            return []
        found = []
        for tag in tags:
            if await read_link(self.driver, paths.tag_current_link(name, tag)) == digest:
                found.append(tag)
        return found


def relied_directories(name: str, digest: Digest) -> list[str]:
    """What a push relying on a manifest in ``name`` needs kept: its content and its revision link."""
    return [paths.blob_dir(digest), paths.revision_dir(name, digest)]


async def repository_exists(driver: StorageDriver, name: str) -> bool:
    try:
        await driver.stat(paths.manifests_dir(name))
    except PathNotFound:
        return False
    return True

