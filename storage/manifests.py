"""Manifest revisions and tags of a repository, stored as Distribution stores them."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict

from storage import paths
from storage.blobs import BlobStore, BlobUnknown, holds, read_link
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver

CACHE_ENTRIES = 4096
CONFIRM_WAIT = 30.0
CONFIRM_POLL = 0.05
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
        """The content (unless stored already) and then the revision link, durable together in one write."""
        items = []
        if await self.blobs.exists(digest):
            await self.blobs.touch(digest)  # an old blob, maybe unreferenced: GC must spare it now
        else:
            items.append((paths.blob_data(digest), content))
        link = paths.revision_link(name, digest)
        items.append((link, str(digest).encode()))
        await self.driver.put_contents(items)
        if len(items) == 2:
            self.blobs.fresh(digest)
        self.blobs.remember_write(link)
        self._remember(digest, content)

    async def relied_on(self, name: str, digest: Digest) -> None:
        """A push in ``name`` relies on this stored manifest (an index lists it): GC must spare it now."""
        await self.blobs.touch(digest)
        await self.blobs.touch_path(paths.revision_link(name, digest), str(digest).encode())

    async def usable(self, name: str, digest: Digest) -> bool:
        """The revision and its content are stored and GC is not deleting them (see BlobStore.usable)."""
        return (await holds(self.driver, paths.revision_dir(name, digest), paths.LINK)
                and await holds(self.driver, paths.blob_dir(digest), paths.BLOB_DATA))

    async def confirm(self, name: str, digest: Digest, content: bytes, wait: float = CONFIRM_WAIT) -> None:
        """While a GC runs: make sure the revision just stored survives it (as ``TagStore.confirm``)."""
        await wait_unmarked(self.driver, paths.revision_dir(name, digest), wait)
        await wait_unmarked(self.driver, paths.blob_dir(digest), wait)
        if not await self.usable(name, digest):
            await self.blobs.put(digest, content)
            await self.driver.put_content(paths.revision_link(name, digest), str(digest).encode())

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

    async def confirm(self, name: str, tag: str, digest: Digest, wait: float = CONFIRM_WAIT) -> None:
        """While a GC runs: make sure the tag just written survives it.  GC removes an expired tag by
        marking its directory ``condemned``, reading its age again and deleting it; a push that wrote
        the tag meanwhile waits until the marker is gone (at most ``wait`` seconds) and writes the tag
        again if it went."""
        await wait_unmarked(self.driver, paths.tag_dir(name, tag), wait)
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


async def wait_unmarked(driver: StorageDriver, directory: str, wait: float) -> None:
    """Wait until GC has finished deleting in ``directory`` (its ``condemned`` marker is gone); a marker
    older than ``wait`` was left by a GC that died and is removed."""
    marker = paths.condemned(directory)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            await driver.stat(marker)
        except PathNotFound:
            return
        await asyncio.sleep(CONFIRM_POLL)
    await driver.delete_file(marker)


async def repository_exists(driver: StorageDriver, name: str) -> bool:
    try:
        await driver.stat(paths.manifests_dir(name))
    except PathNotFound:
        return False
    return True

