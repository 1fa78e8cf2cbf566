"""Repository listing in lexical order, one page at a time.

Distribution walks the whole tree for every page.  Here each directory's children are turned into
sorted keys ("name" for a possible repository, "name/" for a possible sub-tree), so a page starts with
a binary search at ``last`` and touches only the directories on its way: a page costs O(page), not
O(repositories).  Keys sort exactly like the full names, so "a" < "a-b" < "a/b" holds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict

from storage import paths
from storage.driver import PathNotFound, StorageDriver

KEY_CACHE_ENTRIES = 65536


class Catalog:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._keys: OrderedDict[str, tuple[list[str], list[str]]] = OrderedDict()

    async def page(self, last: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``last``, and whether there are more."""
        found: list[str] = []
        await self._visit(paths.REPOSITORIES, "", last or "", limit + 1, found)
        return found[:limit], len(found) > limit

    async def _visit(self, directory: str, prefix: str, last: str, want: int, found: list[str]) -> None:
        keys = await self._sorted_keys(directory, prefix)
        start = bisect_right(keys, last) if last else 0
        if start > 0 and keys[start - 1].endswith("/") and last.startswith(keys[start - 1]):
            start -= 1  # the sub-tree that holds ``last`` itself
        for key in keys[start:]:
            if len(found) >= want:
                return
            if key.endswith("/"):
                await self._visit(f"{paths.REPOSITORIES}/{key[:-1]}", key, last, want, found)
            elif await self._is_repository(key):
                found.append(key)

    async def _sorted_keys(self, directory: str, prefix: str) -> list[str]:
        try:
            names = await self.driver.list(directory)
        except PathNotFound:
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

    async def _is_repository(self, name: str) -> bool:
        """A repository has a ``_manifests`` directory; the listing is reused for its sub-tree key."""
        try:
            return "_manifests" in await self.driver.list(paths.repository(name))
        except PathNotFound:
            return False
