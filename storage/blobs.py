"""Content-addressed blobs and their per-repository links."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TypeVar

from storage import paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.gc_watch import GCView, GCWatch
from storage.sweep import PushGuard


class BlobUnknown(Exception):
    """No such blob (in the registry, or linked into the repository)."""


CACHE_ENTRIES = 65536
# seconds a cached link answers: another replica may unlink it (a blob DELETE) and tells nobody, so the
# answer may be that stale, as long as the database layer's caches (a wrong answer there loses no data)
LINK_TRUST = 2.0


class BlobStore:
    """Blob data under ``blobs/`` plus the ``_layers`` links that make a blob part of a repository.

    **Blob-descriptor cache.**  What this process saw stored, a blob's size and a repository's link, is
    remembered (``CACHE_ENTRIES`` each, least recently used out) together with the view of the GC lease
    it was seen under (``storage.gc_watch``).  Blob data goes only through garbage collection, so a size
    stays true while the current view shows that no collector ran since: then it answers without a
    request.  Links also go when another replica unlinks a blob (DELETE), which this process does not
    hear of: a link answers for ``LINK_TRUST`` seconds only.  Entries seen while a collector ran are not
    kept, and after one ran they are read again.  Where a wrong "exists" would make a client skip an
    upload (HEAD, mount, replication) the link and the data are checked in storage all the same; a blob
    GET that finds the data gone answers 404.
    """

    def __init__(self, driver: StorageDriver, watch: GCWatch | None = None) -> None:
        self.driver = driver
        self.watch = watch if watch is not None else GCWatch(driver)
        self.guard = PushGuard(driver, self.watch)
        self._sizes: OrderedDict[Digest, tuple[int, GCView]] = OrderedDict()
        self._links: OrderedDict[tuple[str, Digest], tuple[float, GCView]] = OrderedDict()  # seen at

    async def stat(self, digest: Digest, check: bool = False) -> int:
        """The blob's size (raises BlobUnknown); ``check``: ask storage even when the cache knows it."""
        view = await self.watch.view()
        if not check:
            known = _recall(self._sizes, digest, view)
            if known is not None:
                return known[0]
        try:
            size = (await self.driver.stat_file(paths.blob_data(digest))).size
        except PathNotFound:
            self._sizes.pop(digest, None)
            raise BlobUnknown(str(digest)) from None
        self.remember(digest, size, view)
        return size

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except BlobUnknown:
            return False
        return True

    async def stat_in_repository(self, name: str, digest: Digest, check: bool = False) -> int:
        """The blob's size, if the repository links it (Distribution's linked blob statter); ``check``: the
        link and the data are checked in storage (a HEAD whose 200 lets a client skip its upload)."""
        view = await self.watch.view()
        seen = None if check else _recall(self._links, (name, digest), view)
        if seen is None or time.monotonic() - seen > LINK_TRUST:
            if await read_link(self.driver, paths.layer_link(name, digest)) != digest:
                self._links.pop((name, digest), None)
                raise BlobUnknown(str(digest))
            _remember(self._links, (name, digest), time.monotonic(), view)
        return await self.stat(digest, check)

    def remember(self, digest: Digest, size: int, view: GCView) -> None:
        """``digest`` was seen stored (or just stored) with ``size``, under ``view`` (read before)."""
        _remember(self._sizes, digest, (size, view), view)

    async def link(self, name: str, digest: Digest) -> None:
        view = await self.watch.view()
        await self.driver.put_content(paths.layer_link(name, digest), str(digest).encode())
        _remember(self._links, (name, digest), time.monotonic(), view)

    async def relied_on(self, name: str, digest: Digest) -> None:
        """A push in ``name`` will rely on this stored blob (a HEAD found it, a mount linked it): a
        collector running now spares it (docs/gc.md)."""
        await self.guard.relied_on(relied_directories(name, digest))

    async def unlink(self, name: str, digest: Digest) -> None:
        self._links.pop((name, digest), None)
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
        view = await self.watch.view()
        await self.driver.put_content(paths.blob_data(digest), content)
        self.remember(digest, len(content), view)

    async def known(self, digest: Digest) -> bool:
        """Whether the blob is stored, asking storage only where a stat is cheap (local files): a caller
        about to write small content writes it again rather than pay a request to find out."""
        view = await self.watch.view()
        if _recall(self._sizes, digest, view) is not None:
            return True
        return self.driver.local_path(paths.ROOT) is not None and await self.exists(digest)

    def local_path(self, digest: Digest) -> str | None:
        return self.driver.local_path(paths.blob_data(digest))

    async def redirect_url(self, digest: Digest, method: str) -> str | None:
        return await self.driver.redirect_url(paths.blob_data(digest), method)


def relied_directories(name: str, digest: Digest) -> list[str]:
    """What a push relying on a blob in ``name`` needs kept: the blob and the repository's link."""
    return [paths.blob_dir(digest), paths.layer_dir(name, digest)]


K = TypeVar("K")
V = TypeVar("V")


def _recall(cache: OrderedDict[K, tuple[V, GCView]], key: K, view: GCView) -> V | None:
    """The cached value, if no collector ran since it was seen (``view``: the current, fresh view)."""
    entry = cache.get(key)
    if entry is None:
        return None
    if not view.same_era(entry[1]):
        del cache[key]
        return None
    cache.move_to_end(key)
    return entry[0]


def _remember(cache: OrderedDict[K, tuple[V, GCView]], key: K, value: V, view: GCView) -> None:
    if view.running:
        cache.pop(key, None)  # a collector may be deleting it: not trusted later
        return
    cache[key] = (value, view)
    cache.move_to_end(key)
    if len(cache) > CACHE_ENTRIES:
        cache.popitem(last=False)


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
