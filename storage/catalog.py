"""Repository listing in lexical order, one page at a time.

Distribution walks the whole tree for every page.  Here a page costs O(page), not O(repositories), in
one of two ways:

* Drivers with an ordered key space (S3) list the keys below ``repositories/`` from ``last`` on, grouped
  at ``/_manifests/``: each repository is one entry, whatever its depth, and 1,000 entries come in one
  request.  The other keys of a repository (``_layers`` links, ``_uploads``, ``_referrers``) come one by
  one; when a listing page ends inside such a directory, the next one starts past it.  Keys sort as
  ``name + "/_manifests/"``, which differs from the order of the names only where one name continues
  another with ``-``, ``.`` or ``/<digit>`` ("a-b" comes before "a"): the few such prefixes of the
  page's last name that the listing has not reached yet are checked one by one.
* Elsewhere (the filesystem) each directory's children are turned into sorted keys ("name" for a
  possible repository, "name/" for a possible sub-tree), so a page starts with a binary search at
  ``last`` and touches only the directories on its way.  Keys sort exactly like the full names, so
  "a" < "a-b" < "a/b" holds.  A listing is made at most once per page.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import OrderedDict

from storage import paths
from storage.driver import PathNotFound, StorageDriver

KEY_CACHE_ENTRIES = 65536
GROUP = "/_manifests/"
MAX_START = 512  # S3 keys are at most 1,024 bytes; any prefix of ``last`` still starts early enough
COMPONENT = re.compile(r"[A-Za-z0-9.-][A-Za-z0-9._-]*")  # what a storage path allows, minus "_" first


class Catalog:
    def __init__(self, driver: StorageDriver, keys_per_request: int = 1000) -> None:
        self.driver = driver
        self.keys_per_request = keys_per_request
        self._keys: OrderedDict[str, tuple[list[str], list[str]]] = OrderedDict()

    async def page(self, last: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``last``, and whether there are more."""
        want = limit + 1
        found = await self._page_by_keys(last or "", want)
        if found is None:
            found = []
            await self._visit(paths.REPOSITORIES, "", last or "", want, found, {})
        return found[:limit], len(found) > limit

    # --- an ordered key space ------------------------------------------------------------------------

    async def _page_by_keys(self, last: str, want: int) -> list[str] | None:
        """The first ``want`` repositories after ``last``; None when the driver has no key order."""
        # every name above ``last`` has its key above ``last`` (a prefix of last may come too: filtered)
        start = last[:MAX_START]
        seen: set[str] = set()
        while True:
            page = await self.driver.list_keys(paths.REPOSITORIES, start, GROUP, self.keys_per_request)
            if page is None:
                return None
            for entry in page.names:
                if entry.endswith(GROUP):
                    name = entry[: -len(GROUP)]
                    if name > last and _plausible(name):
                        seen.add(name)
            if not page.truncated:
                return sorted(seen)[:want]
            start = max(page.next_start, _past_reserved(page.names[-1]) if page.names else "")
            if len(seen) >= want:
                break
        # ``start`` is how far the keys were read.  A name not seen yet (its key is beyond ``start``) that
        # sorts before ``cutoff``, whose key was read, must be a prefix of ``cutoff``: check those.
        ordered = sorted(seen)
        cutoff = ordered[want - 1]
        listings: dict[str, list[str] | None] = {}
        for j in range(1, len(cutoff)):
            name = cutoff[:j]
            if (name > last and name not in seen and cutoff[j:] + GROUP < GROUP and name + GROUP > start
                    and _plausible(name) and await self._is_repository(name, listings)):
                seen.add(name)
        return sorted(seen)[:want]

    # --- directory by directory ----------------------------------------------------------------------

    async def _visit(self, directory: str, prefix: str, last: str, want: int, found: list[str],
                     listings: dict[str, list[str] | None]) -> None:
        keys = await self._sorted_keys(directory, prefix, listings)
        start = bisect_right(keys, last) if last else 0
        if start > 0 and keys[start - 1].endswith("/") and last.startswith(keys[start - 1]):
            start -= 1  # the sub-tree that holds ``last`` itself
        for key in keys[start:]:
            if len(found) >= want:
                return
            if key.endswith("/"):
                await self._visit(f"{paths.REPOSITORIES}/{key[:-1]}", key, last, want, found, listings)
            elif await self._is_repository(key, listings):
                found.append(key)

    async def _list(self, directory: str, listings: dict[str, list[str] | None]) -> list[str] | None:
        """The directory's children (None when it does not exist), listed at most once per page."""
        if directory not in listings:
            try:
                listings[directory] = await self.driver.list(directory)
            except PathNotFound:
                listings[directory] = None
        return listings[directory]

    async def _sorted_keys(self, directory: str, prefix: str, listings: dict[str, list[str] | None]) -> list[str]:
        names = await self._list(directory, listings)
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

    async def _is_repository(self, name: str, listings: dict[str, list[str] | None]) -> bool:
        """A repository has a ``_manifests`` directory; the listing is reused for its sub-tree key."""
        return "_manifests" in (await self._list(paths.repository(name), listings) or ())


def _plausible(name: str) -> bool:
    """A path below ``repositories/`` that can be a repository: no empty, ``.``, ``..`` or ``_``-prefixed
    component (keys written by other tools may hold anything)."""
    return all(COMPONENT.fullmatch(part) and part not in (".", "..") for part in name.split("/"))


def _past_reserved(key: str) -> str:
    """Where to continue after ``key`` to skip the rest of the ``_``-prefixed directory holding it.

    Such a directory holds no repositories.  Before ``_manifests`` (``_layers``) the listing continues
    right after it, where the repository's ``_manifests`` group comes; after it, past all of the
    repository's ``_`` directories.  "" when ``key`` is in none.
    """
    parts = key.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("_"):
            base = "/".join(parts[:i])
            base = f"{base}/" if base else ""
            # "0" follows "/", and "`" follows "_"
            return f"{base}{part}0" if f"{part}/" < GROUP[1:] else f"{base}`"
    return ""
