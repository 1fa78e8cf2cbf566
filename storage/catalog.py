"""The repository catalog: repositories in lexical order, one page at a time (``/v2/_catalog``), and every
name at once from a recent walk (searches).

Distribution walks the whole tree for every page; here a page costs O(page), not O(repositories): see
``storage.tree`` for how the repositories after a name are found on each kind of driver.

Searches (``/v1/search``, the web UI's filters) look at every name, so they read ``names()``: the names
of the last full walk, walked again when asked for after ``max_age`` seconds (and never more often than
ten times the walk's own duration, so walking costs at most a tenth of the time however hard searches
come).  One walk serves every concurrent caller.  The walk reads the storage, so repositories created
or removed through any replica show in every replica's searches within ``max_age``; those this process
creates show at once (``created``).  The exact catalog is ``page``.
"""

from __future__ import annotations

import asyncio
import bisect
import time

from storage.driver import StorageDriver
from storage.tree import RepositoryTree

NAMES_MAX_AGE = 10.0
WALK_SHARE = 10


class Catalog:
    def __init__(self, driver: StorageDriver, keys_per_request: int = 1000, max_age: float = NAMES_MAX_AGE) -> None:
        self.tree = RepositoryTree(driver, keys_per_request)
        self.max_age = max_age
        self._names: list[str] | None = None
        self._next_walk = 0.0  # time.monotonic() from which a walk may start again
        self._walking: asyncio.Future[list[str]] | None = None

    async def page(self, last: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` repositories after ``last``, and whether there are more."""
        found = await self.tree.first(last or "", limit + 1)
        return found[:limit], len(found) > limit

    async def names(self) -> list[str]:
        """Every repository, sorted, as of at most ``max_age`` seconds ago (do not modify the list)."""
        if self._names is not None and time.monotonic() < self._next_walk:
            return self._names
        if self._walking is None:
            self._walking = asyncio.ensure_future(self._walk())
        return await asyncio.shield(self._walking)  # a caller that gives up does not cancel the others' walk

    def created(self, name: str) -> None:
        """This process pushed to ``name``: searches show it before the next walk."""
        names = self._names
        if names is not None:
            at = bisect.bisect_left(names, name)
            if at == len(names) or names[at] != name:
                self._names = [*names[:at], name, *names[at:]]  # a new list: callers may be iterating the old

    async def _walk(self) -> list[str]:
        started = time.monotonic()
        try:
            names = [name async for name in self.tree.repositories()]
        finally:
            self._walking = None
        self._names = names
        self._next_walk = started + max(self.max_age, WALK_SHARE * (time.monotonic() - started))
        return names
