"""Manifest revisions and tags of a repository, stored as Distribution stores them."""

from __future__ import annotations

import asyncio
import itertools
import os
from bisect import bisect_right
from collections import OrderedDict

from storage import paths
from storage.blobs import BlobStore, BlobUnknown, read_link
from storage.digests import Digest
from storage.driver import PathNotFound, StorageDriver

CACHE_ENTRIES = 4096
CACHE_MAX_BYTES = 64 << 10
KEYS_PER_REQUEST = 1000  # S3's most per listing
INLINE_CHECKS = 256  # tags checked for a current link on the event loop; more go to a thread


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
        local = self.driver.local_path(directory)
        if local is not None:
            names = await self.driver.list(directory)
            return await _acknowledged(local, names, 0, len(names))
        nested = await self.driver.list_nested(directory, 3)  # one listing per 1,000 keys on S3
        return [entry.split("/", 1)[0] for entry in nested if entry.endswith(f"/{paths.TAG_CURRENT_LINK}")]

    async def page(self, name: str, last: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` tags after ``last`` in lexical order, and whether more follow; raises
        PathNotFound when the repository has no tags directory.  Costs O(page), not O(tags): 10,009
        tags paged by 7 took 340 s when every page read them all.

        On disk the directory's sorted listing is cached until the directory changes (its mtime, so a
        tag written through another replica sharing the disk is seen at once): a page starts with a
        binary search and checks the current links of its own tags only.  In an ordered key space (S3)
        a page is one listing that starts after ``last``.
        """
        directory = paths.tags_dir(name)
        local = self.driver.local_path(directory)
        if local is not None:
            names = await self.driver.list(directory)
            tags = await _acknowledged(local, names, bisect_right(names, last) if last else 0, limit + 1)
            return tags[:limit], len(tags) > limit
        found = await self._page_by_keys(name, last or "", limit + 1)
        if found is None:  # a backend without key order: every tag, then the page
            every = await self.list(name)
            found = every[bisect_right(every, last) if last else 0 :][: limit + 1]
        return found[:limit], len(found) > limit

    async def _page_by_keys(self, name: str, last: str, want: int) -> list[str] | None:
        """The first ``want`` tags after ``last`` from an ordered key listing; None without key order.

        Keys sort as ``tag + "/current/link"``, unlike the tags themselves only where one tag continues
        another with ``-`` or ``.`` (both sort before ``/``): "a-b/..." comes before "a/...".  So once
        ``want`` tags are found, the few prefixes of the last of them that the listing may not have
        reached yet are checked one by one (as ``storage.tree`` does for repository names).
        """
        directory = paths.tags_dir(name)
        current = f"/{paths.TAG_CURRENT_LINK}"
        found: set[str] = set()
        start = last
        while True:
            page = await self.driver.list_keys(directory, start, "", KEYS_PER_REQUEST)
            if page is None:
                return None
            if not page.names and start == last:
                await self.driver.stat(directory)  # raises PathNotFound when there are no tags at all
            found.update(key[: -len(current)] for key in page.names
                         if key.endswith(current) and key.count("/") == 2 and key[: -len(current)] > last)
            if not page.truncated:
                return sorted(found)[:want]
            start = page.next_start
            if len(found) >= want:
                break
        ordered = sorted(found)
        cutoff = ordered[want - 1]
        for end in range(1, len(cutoff)):
            tag = cutoff[:end]
            if cutoff[end] in "-." and tag > last and tag not in found:
                try:
                    await self.driver.stat(paths.tag_current_link(name, tag))
                except PathNotFound:
                    continue
                found.add(tag)
        return sorted(found)[:want]

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


async def _acknowledged(directory: str, names: list[str], start: int, want: int) -> list[str]:
    """The first ``want`` of ``names[start:]`` (the entries of the tags directory ``directory`` on disk)
    that have a current link; checked in a thread when there are many (10,000 stats hold a CPU for a
    second)."""
    def check() -> list[str]:
        found = []
        for tag in itertools.islice(names, start, None):
            if os.path.isfile(os.path.join(directory, tag, paths.TAG_CURRENT_LINK)):
                found.append(tag)
                if len(found) >= want:
                    break
        return found

    return check() if want <= INLINE_CHECKS else await asyncio.to_thread(check)


async def repository_exists(driver: StorageDriver, name: str) -> bool:
    try:
        await driver.stat(paths.manifests_dir(name))
    except PathNotFound:
        return False
    return True

