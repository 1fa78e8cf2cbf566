"""The one walk of the repository tree: every repository in lexical order, and what each one holds.

The catalog, upload purging, the referrers rebuild and garbage collection all go through
``RepositoryTree``; where things live comes from ``storage.paths``.

Repositories are found in lexical order from any start point, a batch at a time, so a walk costs
O(batch) per step, not O(repositories), and holds one batch in memory:

* Drivers with an ordered key space (S3) list the keys below ``repositories/`` after the start point,
  grouped at ``/<marker>/`` (``/_manifests/`` for the catalog): each repository is one entry, whatever
  its depth, and 1,000 entries come in one request.  The other keys of a repository (``_layers`` links,
  ``_uploads``, ``_referrers``) come one by one; when a listing page ends inside such a directory, the
  next one starts past it.  Keys sort as ``name + "/<marker>/"``, which differs from the order of the
  names only where one name continues another with ``-``, ``.`` or ``/<digit>`` ("a-b" comes before
  "a"): the few such prefixes of the batch's last name that the listing has not reached yet are checked
  one by one.
* Elsewhere (the filesystem) each directory's children are turned into sorted keys ("name" for a
  possible repository, "name/" for a possible sub-tree), so a batch starts with a binary search at the
  start point and touches only the directories on its way.  Keys sort exactly like the full names, so
  "a" < "a-b" < "a/b" holds.  A directory is listed at most once per batch.

Usage (every method is a coroutine or an async iterator; missing directories read as empty)::

    tree = RepositoryTree(driver)
    async for name in tree.repositories():              # those with manifests (Distribution's catalog)
        for digest in await tree.revisions(name):       # _manifests/revisions/<alg>/<hex>
            ...
        for tag in await tree.tags(name):               # _manifests/tags/<tag>
            current = await tree.tag_current(name, tag) # the digest the tag points at, or None
            history = await tree.tag_index(name, tag)   # every digest the tag pointed at
        layers = await tree.layers(name)                # _layers/<alg>/<hex>
        sessions = await tree.uploads(name)             # _uploads/<id>
    async for name in tree.repositories(marker=paths.UPLOADS):  # those with upload sessions
        ...
    async for digest in tree.blobs():                   # blobs/<alg>/<hex[:2]>/<hex>
        ...
    async for digest, size, last_used, files in tree.blob_files():  # with sizes and ages (GC, du)
        ...
    async for ... in tree.blob_files(skip=marked.__contains__):  # GC: what it keeps is not read
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from storage import paths
from storage.blobs import read_link
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import FileInfo, PathNotFound, StorageDriver

KEY_CACHE_ENTRIES = 65536
YIELD_EVERY = 64  # directory listings between two turns of the event loop
BATCH = 1000  # repositories per step of ``repositories()``
MAX_START = 512  # S3 keys are at most 1,024 bytes; any prefix of a start point still starts early enough
COMPONENT = re.compile(r"[A-Za-z0-9.-][A-Za-z0-9._-]*")  # what a storage path allows, minus "_" first

Listings = dict[str, "list[str] | None"]


class RepositoryTree:
    """Walks of the tree below ``/docker/registry/v2``; keep one per driver (it caches sorted listings).

    A repository is a directory below ``repositories/`` that holds a ``marker`` directory:
    ``paths.MANIFESTS`` (the default: what Distribution's catalog lists), or e.g. ``paths.UPLOADS`` for
    the directories where a push has started, including a first push that never finished.
    """

    def __init__(self, driver: StorageDriver, keys_per_request: int = 1000) -> None:
        self.driver = driver
        self.keys_per_request = keys_per_request
        self._keys: OrderedDict[str, tuple[list[str], list[str]]] = OrderedDict()

    # --- repositories --------------------------------------------------------------------------------

    async def repositories(self, after: str = "", marker: str = paths.MANIFESTS) -> AsyncIterator[str]:
        """Every repository whose name sorts after ``after`` (which need not exist), in lexical order.

        Repositories created or removed while the walk runs may or may not be seen.
        """
        while True:
            batch = await self.first(after, BATCH, marker)
            for name in batch:
                yield name
            if len(batch) < BATCH:
                return
            after = batch[-1]

    async def first(self, after: str, count: int, marker: str = paths.MANIFESTS) -> list[str]:
        """The first ``count`` repositories after ``after``, in lexical order (a catalog page)."""
        found = await self._first_by_keys(after, count, marker)
        if found is None:
            found = []
            await self._visit(paths.REPOSITORIES, "", after, count, marker, found, {})
        return found

    async def is_repository(self, name: str, marker: str = paths.MANIFESTS) -> bool:
        return await self._is_repository(name, marker, {})

    # --- what a repository holds ---------------------------------------------------------------------

    async def tags(self, name: str) -> list[str]:
        """The repository's tags in lexical order."""
        return await self._list(paths.tags_dir(name))

    async def tag_current(self, name: str, tag: str) -> Digest | None:
        """The digest ``tag`` points at; None when the tag is gone or its link is garbled."""
        return await read_link(self.driver, paths.tag_current_link(name, tag))

    async def tag_index(self, name: str, tag: str) -> list[Digest]:
        """Every manifest ``tag`` has pointed at (``index/<alg>/<hex>``), ordered by digest."""
        return await self._digests(paths.tag_index_dir(name, tag))

    async def revisions(self, name: str) -> list[Digest]:
        """The manifests linked into the repository, ordered by digest."""
        return await self._digests(paths.revisions_dir(name))

    async def layers(self, name: str) -> list[Digest]:
        """The blobs linked into the repository (``_layers``), ordered by digest."""
        return await self._digests(paths.layers_dir(name))

    async def uploads(self, name: str) -> list[str]:
        """The ids of the repository's upload sessions, sorted."""
        return await self._list(paths.uploads_dir(name))

    async def referrers(self, name: str, subject: Digest) -> list[Digest]:
        """The referrers of ``subject`` in Moorage's index, ordered by digest (not checked for liveness)."""
        return await self._digests(paths.referrers_dir(name, subject))

    # --- blobs ---------------------------------------------------------------------------------------

    async def blobs(self) -> AsyncIterator[Digest]:
        """Every blob of the registry (``blobs/<alg>/<hex[:2]>/<hex>``), ordered by algorithm and hex.

        One ``<hex[:2]>`` directory is held in memory at a time; entries that are not digests are skipped.
        """
        for algorithm in await self._list(paths.BLOBS):
            for prefix in await self._list(paths.blobs_dir(algorithm)):
                for hex_ in await self._list(paths.blobs_prefix_dir(algorithm, prefix)):
                    digest = _digest(algorithm, hex_)
                    if digest is not None and hex_.startswith(prefix):
                        yield digest

    async def blob_files(self, skip: Callable[[Digest], bool] | None = None
                         ) -> AsyncIterator[tuple[Digest | None, int, float, list[str]]]:
        """Every blob directory with its digest (None when it holds no ``data``), size, last use (the
        newest of ``data`` and ``lastused``) and files: one walk of ``blobs/`` (on S3 one listing per
        1,000 keys), for garbage collection and accounting.

        ``skip``: blobs whose size, age and files the caller does not need (those GC keeps).  Where a
        directory's listing is an operation of its own (local disk) they are not read at all and come
        as ``(digest, -1, 0.0, [])``: GC then reads the directories of a fifth of the blobs, not all."""
        if skip is not None and await self.driver.list_keys(paths.BLOBS, limit=1) is None:
            async for entry in self._blob_files_by_directory(skip):
                yield entry
            return
        current: str | None = None
        files: dict[str, FileInfo] = {}
        try:
            async for info in self.driver.walk(paths.BLOBS):
                if info.is_dir:
                    continue
                directory, _, name = info.path.rpartition("/")
                if directory != current:
                    if current is not None and files:
                        yield _blob_entry(current, files)
                    current, files = directory, {}
                files[name] = info
        except PathNotFound:
            return
        if current is not None and files:
            yield _blob_entry(current, files)

    async def _blob_files_by_directory(self, skip: Callable[[Digest], bool]
                                       ) -> AsyncIterator[tuple[Digest | None, int, float, list[str]]]:
        for algorithm in await self._list(paths.BLOBS):
            for prefix in await self._list(paths.blobs_dir(algorithm)):
                directory = paths.blobs_prefix_dir(algorithm, prefix)
                try:
                    names = await self.driver.list_nested(directory, 1)  # (not kept in a listing cache)
                except PathNotFound:
                    continue
                for hex_ in names:
                    digest = _digest(algorithm, hex_)
                    if digest is not None and skip(digest):
                        yield digest, -1, 0.0, []
                        continue
                    files: dict[str, FileInfo] = {}
                    try:
                        for name in await self.driver.list_nested(f"{directory}/{hex_}", 1):
                            with contextlib.suppress(PathNotFound):
                                files[name] = await self.driver.stat_file(f"{directory}/{hex_}/{name}")
                    except PathNotFound:
                        continue
                    if files:
                        yield _blob_entry(f"{directory}/{hex_}", files)

    # --- helpers -------------------------------------------------------------------------------------

    async def _list(self, path: str) -> list[str]:
        try:
            return await self.driver.list(path)
        except PathNotFound:
            return []

    async def _digests(self, path: str) -> list[Digest]:
        """The ``<alg>/<hex>`` entries below ``path`` in order (one listing on S3, not one per algorithm)."""
        try:
            entries = await self.driver.list_nested(path, 2)
        except PathNotFound:
            return []
        found = (_digest(algorithm, hex_) for algorithm, _, hex_ in (e.partition("/") for e in entries))
        return [digest for digest in found if digest is not None]

    # --- repositories in an ordered key space --------------------------------------------------------

    async def _first_by_keys(self, last: str, want: int, marker: str) -> list[str] | None:
        """The first ``want`` repositories after ``last``; None when the driver has no key order."""
        group = f"/{marker}/"
        # every name above ``last`` has its key above ``last`` (a prefix of last may come too: filtered)
        start = last[:MAX_START]
        seen: set[str] = set()
        while True:
            page = await self.driver.list_keys(paths.REPOSITORIES, start, group, self.keys_per_request)
            if page is None:
                return None
            for entry in page.names:
                if entry.endswith(group):
                    name = entry[: -len(group)]
                    if name > last and _plausible(name):
                        seen.add(name)
            if not page.truncated:
                return sorted(seen)[:want]
            start = max(page.next_start, _past_reserved(page.names[-1], group) if page.names else "")
            if len(seen) >= want:
                break
        # ``start`` is how far the keys were read.  A name not seen yet (its key is beyond ``start``) that
        # sorts before ``cutoff``, whose key was read, must be a prefix of ``cutoff``: check those.
        ordered = sorted(seen)
        cutoff = ordered[want - 1]
        listings: Listings = {}
        for j in range(1, len(cutoff)):
            name = cutoff[:j]
            if (name > last and name not in seen and cutoff[j:] + group < group and name + group > start
                    and _plausible(name) and await self._is_repository(name, marker, listings)):
                seen.add(name)
        return sorted(seen)[:want]

    # --- repositories directory by directory ---------------------------------------------------------

    async def _visit(self, directory: str, prefix: str, last: str, want: int, marker: str, found: list[str],
                     listings: Listings) -> None:
        keys = await self._sorted_keys(directory, prefix, listings)
        start = bisect_right(keys, last) if last else 0
        if start > 0 and keys[start - 1].endswith("/") and last.startswith(keys[start - 1]):
            start -= 1  # the sub-tree that holds ``last`` itself
        for key in keys[start:]:
            if len(found) >= want:
                return
            if key.endswith("/"):
                await self._visit(paths.repository(key[:-1]), key, last, want, marker, found, listings)
            elif await self._is_repository(key, marker, listings):
                found.append(key)

    async def _listing(self, directory: str, listings: Listings) -> list[str] | None:
        """The directory's children (None when it does not exist), listed at most once per batch.

        The filesystem answers a cached listing without suspending: every ``YIELD_EVERY`` listings the
        event loop gets a turn, or a page of 10,000 repositories would hold it for half a second.
        """
        if directory not in listings:
            try:
                listings[directory] = await self.driver.list(directory)
            except PathNotFound:
                listings[directory] = None
            if len(listings) % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return listings[directory]

    async def _sorted_keys(self, directory: str, prefix: str, listings: Listings) -> list[str]:
        names = await self._listing(directory, listings)
        if names is None:
            return []
        cached = self._keys.get(directory)
        if cached is not None and cached[0] is names:
            self._keys.move_to_end(directory)
            return cached[1]
        keys = sorted(
            key for name in names if not name.startswith("_") for key in (prefix + name, prefix + name + "/")
        )
        self._keys[directory] = (names, keys)
        if len(self._keys) > KEY_CACHE_ENTRIES:
            self._keys.popitem(last=False)
        return keys

    async def _is_repository(self, name: str, marker: str, listings: Listings) -> bool:
        """A repository holds a ``marker`` directory; the listing is reused for its sub-tree key."""
        return marker in (await self._listing(paths.repository(name), listings) or ())


def _digest(algorithm: str, hex_: str) -> Digest | None:
    try:
        return parse_digest(f"{algorithm}:{hex_}")
    except InvalidDigest:
        return None


def _blob_entry(directory: str, files: dict[str, FileInfo]) -> tuple[Digest | None, int, float, list[str]]:
    data = files.get(paths.BLOB_DATA)
    digest = paths.blob_of(directory) if data is not None else None
    size = data.size if data is not None else 0
    return digest, size, max(info.modified for info in files.values()), [info.path for info in files.values()]


def _plausible(name: str) -> bool:
    """A path below ``repositories/`` that can be a repository: no empty, ``.``, ``..`` or ``_``-prefixed
    component (keys written by other tools may hold anything)."""
    return all(COMPONENT.fullmatch(part) and part not in (".", "..") for part in name.split("/"))


def _past_reserved(key: str, group: str) -> str:
    """Where to continue after ``key`` to skip the rest of the ``_``-prefixed directory holding it.

    Such a directory holds no repositories.  Before the ``group`` directory (``_layers`` before
    ``_manifests``) the listing continues right after it, where the repository's group comes; after it,
    past all of the repository's ``_`` directories.  "" when ``key`` is in none.
    """
    parts = key.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("_"):
            base = "/".join(parts[:i])
            base = f"{base}/" if base else ""
            # "0" follows "/", and "`" follows "_"
            return f"{base}{part}0" if f"{part}/" < group[1:] else f"{base}`"
    return ""
