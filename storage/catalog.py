"""The repository catalog (``/v2/_catalog``): repositories in lexical order, one page at a time.

Distribution walks the whole tree for every page; here a page costs O(page), not O(repositories): see
``storage.tree`` for how the repositories after a name are found on each kind of driver.
"""

from __future__ import annotations

from storage.driver import StorageDriver
from storage.tree import RepositoryTree


class Catalog:
    def __init__(self, driver: StorageDriver, keys_per_request: int = 1000) -> None:
        self.tree = RepositoryTree(driver, keys_per_request)

    async def page(self, last: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``last``, and whether there are more."""
        found = await self.tree.first(last or "", limit + 1)
        return found[:limit], len(found) > limit
