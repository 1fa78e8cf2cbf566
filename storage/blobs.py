"""Content-addressed blobs and their per-repository links."""

from __future__ import annotations

from collections.abc import AsyncIterator

from storage import paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import FileInfo, PathNotFound, StorageDriver


class BlobUnknown(Exception):
    """No such blob (in the registry, or linked into the repository)."""


class BlobStore:
    """Blob data under ``blobs/`` plus the ``_layers`` links that make a blob part of a repository."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

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

    def local_path(self, digest: Digest) -> str | None:
        return self.driver.local_path(paths.blob_data(digest))

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        return await self.driver.redirect_url(paths.blob_data(digest), method)


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
