"""The change feed: how every replica's caches of database state learn of a change within a second.

Every policy change increments one counter (``feed.version``) in its own transaction
(``Database.write``).  Each process polls that counter every ``interval`` (0.5 s: a primary-key read,
two per second per process) and reloads the caches that follow it when it moved.  Polling rather than
PostgreSQL's LISTEN/NOTIFY: it works the same on SQLite, survives a lost connection without a
resubscription protocol, and its bound holds without trusting delivery.

A cache also knows when it was last *confirmed*: the start time of the latest poll that found its version
current.  ``Cached.fresh(max_age)`` returns the value only if that is recent enough and otherwise checks
the counter itself (one bounded query, sharing no check that began before the call), so a decision that
must not be stale (a push after a revocation) never rests on a poll that stopped, and a decision that may
(a pull) costs no query while the poller runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from storage.background import stop
from storage.database.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from storage.database.engine import Database

log = logging.getLogger("moorage.database")
T = TypeVar("T")
POLL_INTERVAL = 0.5


class Cached(Generic[T]):
    """A value computed from the database in one transaction (e.g. the policy snapshot), reloaded when
    the feed's counter moves."""

    def __init__(self, db: Database, load: Callable[[Connection], T], name: str) -> None:
        self.db = db
        self.load = load
        self.name = name
        self.value: T | None = None
        self.version: int | None = None
        self.confirmed = -math.inf  # monotonic time from which the value is known current
        self.loads = 0  # reloads so far (tests and metrics)
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_began = -math.inf  # when the running refresh was asked for (its counter read follows)

    def peek(self) -> T | None:
        """The latest value, however old (None before the first load)."""
        return self.value

    def age(self) -> float:
        return time.monotonic() - self.confirmed

    async def fresh(self, max_age: float) -> T:
        """The value, known current within ``max_age`` seconds of this call; checks the database when it
        is not (raises DatabaseUnavailable when that fails).  A check that began after the call is
        current for it however long the database then took to answer: a busy server is slow, not stale."""
        asked = time.monotonic()
        if self.value is None or self.confirmed < asked - max_age:
            await self.refresh()
        assert self.value is not None  # a refresh that returned has loaded a value
        return self.value

    async def refresh(self, observed: tuple[int, float] | None = None) -> None:
        """Confirm or reload; ``observed`` is a (version, poll start) the feed read already.  Concurrent
        callers share one refresh, but only one that began after they asked: a check that read the
        counter before a write this caller just made would confirm the state before it."""
        asked = observed[1] if observed is not None else time.monotonic()
        while True:
            running = self._refresh
            if running is None or running.done():
                self._refresh_began = asked
                running = self._refresh = asyncio.ensure_future(self._check(observed))
            elif self._refresh_began < asked:
                with contextlib.suppress(Exception):  # its outcome is not this caller's answer
                    await asyncio.shield(running)
                continue
            await asyncio.shield(running)
            return

    async def _check(self, observed: tuple[int, float] | None) -> None:
        if observed is None:
            started = time.monotonic()
            version = await self.db.read(self.db.version)
        else:
            version, started = observed
        if self.value is None or version != self.version:
            value, version = await self.db.read(self._load)
            self.value, self.version = value, version
            self.loads += 1
            log.debug("%s reloaded at version %d", self.name, version)
        self.confirmed = max(self.confirmed, started)

    def _load(self, conn: Connection) -> tuple[T, int]:
        """The value and the version it reflects, read in one transaction (a consistent snapshot)."""
        return self.load(conn), self.db.version(conn)


class ChangeFeed:
    """Polls the counter and refreshes the caches that follow it; runs while the app runs."""

    def __init__(self, db: Database, interval: float = POLL_INTERVAL) -> None:
        self.db = db
        self.interval = interval
        self.caches: list[Cached[object]] = []
        self._task: asyncio.Task[None] | None = None

    def follow(self, cache: Cached[T]) -> Cached[T]:
        self.caches.append(cache)  # type: ignore[arg-type]
        return cache

    def start(self) -> None:
        """Polling starts only when some cache follows the feed: without one the database is never opened."""
        if self.caches and self._task is None:
            self._task = asyncio.create_task(self.run())

    async def poll(self) -> None:
        """One round: read the counter once, confirm or reload every cache."""
        started = time.monotonic()
        version = await self.db.read(self.db.version)
        for cache in self.caches:
            await cache.refresh((version, started))

    async def run(self) -> None:
        down = False
        while True:
            try:
                await self.poll()
                if down:
                    log.warning("database reachable again: caches current")
                down = False
            except DatabaseUnavailable as e:
                if not down:
                    log.warning("change feed cannot poll the database (%s): decisions wait for it", e)
                down = True
            except Exception:
                log.exception("change feed poll failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await stop(task)
