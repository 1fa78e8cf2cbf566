"""Content-addressed blobs and their per-repository links."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from storage import paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import FileInfo, PathNotFound, StorageDriver


class BlobUnknown(Exception):
    """No such blob (in the registry, or linked into the repository)."""


TOUCH_CACHE_ENTRIES = 65536


class BlobStore:
    """Blob data under ``blobs/`` plus the ``_layers`` links that make a blob part of a repository.

    ``touch_interval``: a push that relies on a stored blob (HEAD, mount, manifest PUT) marks the blob
    and its link as used, so that a GC running meanwhile spares them (docs/gc.md); this process marks
    each at most once per interval (a quarter of GC's grace window).
    """

    def __init__(self, driver: StorageDriver, touch_interval: float = 0.0) -> None:
        self.driver = driver
        self.touch_interval = touch_interval
        self._touched: OrderedDict[str, float] = OrderedDict()

    async def stat(self, digest: Digest) -> FileInfo:
        try:
            return await self.driver.stat(paths.blob_data(digest))
        except PathNotFound:
            raise BlobUnknown(str(digest)) from None

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except BlobUnknown:
            return False
        return True

    async def stat_in_repository(self, name: str, digest: Digest) -> FileInfo:
        """The blob, if the repository links it (Distribution's linked blob statter)."""
        if await read_link(self.driver, paths.layer_link(name, digest)) != digest:
            raise BlobUnknown(str(digest))
        return await self.stat(digest)

    async def link(self, name: str, digest: Digest) -> None:
        await self.driver.put_content(paths.layer_link(name, digest), str(digest).encode())
        self.remember_write(paths.layer_link(name, digest))

    async def relied_on(self, name: str, digest: Digest) -> None:
        """A push in ``name`` relies on this stored blob: mark the blob and its link as used now."""
        await self.touch(digest)
        await self._touch(paths.layer_link(name, digest), str(digest).encode())

    async def usable(self, name: str, digest: Digest) -> bool:
        """The blob is stored and linked into ``name``, and GC is not deleting either (no ``condemned``
        marker): what a push checks after storing a manifest while a GC runs (docs/gc.md)."""
        return (await holds(self.driver, paths.blob_dir(digest), paths.BLOB_DATA)
                and await holds(self.driver, paths.layer_dir(name, digest), paths.LINK))

    async def touch(self, digest: Digest) -> None:
        """Mark the blob as used now (its ``lastused`` object; the data itself is never rewritten)."""
        await self._touch(paths.blob_last_used(digest), str(time.time()).encode())

    def fresh(self, digest: Digest) -> None:
        """The blob was just stored: it counts as used now without writing ``lastused``."""
        self.remember_write(paths.blob_last_used(digest))

    async def touch_path(self, path: str, content: bytes) -> None:
        """Rewrite a small object (a link) with the same content: its modification time becomes now."""
        await self._touch(path, content)

    async def _touch(self, path: str, content: bytes) -> None:
        last = self._touched.get(path)
        if last is not None and time.monotonic() - last < self.touch_interval:
            return
        await self.driver.put_content(path, content)
        self.remember_write(path)

    def remember_write(self, path: str) -> None:
        """``path`` was written just now: it counts as touched."""
        self._touched[path] = time.monotonic()
        self._touched.move_to_end(path)
        if len(self._touched) > TOUCH_CACHE_ENTRIES:
            self._touched.popitem(last=False)

    async def unlink(self, name: str, digest: Digest) -> None:
        try:
            await self.driver.delete(paths.layer_dir(name, digest))
        except PathNotFound:
            raise BlobUnknown(str(digest)) from None

    def reader(self, digest: Digest, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.reader(paths.blob_data(digest), offset, length)

    async def get(self, digest: Digest) -> bytes:
        try:
            return await self.driver.get_content(paths.blob_data(digest))
        except PathNotFound:
            raise BlobUnknown(str(digest)) from None

    async def put(self, digest: Digest, content: bytes) -> None:
        """Store small content whose digest the caller has computed (manifests)."""
        if not await self.exists(digest):
            await self.driver.put_content(paths.blob_data(digest), content)
            self.fresh(digest)
        else:
            await self.touch(digest)  # an old blob, maybe unreferenced: GC must spare it now

    def local_path(self, digest: Digest) -> str | None:
        return self.driver.local_path(paths.blob_data(digest))

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        return await self.driver.redirect_url(paths.blob_data(digest), method)


async def holds(driver: StorageDriver, directory: str, name: str) -> bool:
    """``directory`` holds ``name`` and no ``condemned`` marker (one listing)."""
    try:
        found = await driver.list(directory)
    except PathNotFound:
        return False
    return name in found and paths.condemned(directory).rpartition("/")[2] not in found


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link file names, or None when it is missing or garbled."""
    try:
        content = await driver.get_content(path)
    except PathNotFound:
        return None
    try:
        return parse_digest(content.decode("ascii", "replace").strip())
    except InvalidDigest:
        return None
