"""The durable event queue of one endpoint, kept in storage through the driver (filesystem or S3), so a
restart loses nothing and every replica sees the same queue.

Events are one object each under ``paths.notification_events(endpoint)`` (in Moorage's own directory,
which Distribution ignores), named ``<ns-time>-<event id>.json`` so that a listing is in time order.

One replica at a time delivers an endpoint's queue: the one holding the lease ``notifications-<endpoint>``
(``storage.lease``: taken under a file lock on a filesystem, else written and read back after ``settle``
seconds; renewed while held, released on shutdown, expired ``lease`` seconds after a crash). Should two
replicas on S3 ever both deliver (a write slower than ``settle``), the receiver gets an event twice under
the same id: delivery is at-least-once.

With a ``limit``, the queue keeps at most that many events: while the receiver fails, the oldest go first
(a scanner cares about the latest pushes), counted in ``moorage_notification_events_dropped_total`` and
logged.  Every replica checks after each ``limit // 100`` events it queued (one listing), so the queue
may exceed the limit by that much per replica between checks; the delivering replica checks at every look.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from registry.events import metrics
from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.lease import Lease

log = logging.getLogger("moorage.notifications")


class EventQueue:
    def __init__(self, driver: StorageDriver, endpoint: str, lease: float, settle: float = 0.5,
                 limit: int | None = None, directory: str | None = None) -> None:
        """``limit``: events kept at most (the oldest are dropped beyond it); None keeps every event.
        ``directory``: where an internal consumer's queue lives (replication's), else the endpoint's."""
        self.driver = driver
        self.endpoint = endpoint
        self.events_dir = directory or paths.notification_events(endpoint)
        self.lease = Lease(driver, f"notifications-{endpoint}", ttl=lease, settle=settle)
        self.limit = limit
        self.check_every = max(1, (limit or 0) // 100)
        self._unchecked = 0  # events this process queued since it last counted the queue
        self.dropped = metrics.notification_dropped.labels(endpoint)
        self.pending_gauge = metrics.notification_pending.labels(endpoint)

    async def put(self, event: dict[str, Any]) -> None:
        name = f"{time.time_ns():020d}-{uuid.UUID(event['id']).hex}.json"
        await self.driver.put_content(f"{self.events_dir}/{name}", json.dumps(event).encode())
        self._unchecked += 1
        if self.limit is not None and self._unchecked >= self.check_every:
            await self.trim()

    async def trim(self, names: list[str] | None = None) -> list[str]:
        """Drop the oldest events beyond ``limit``; the names left, oldest first (``names``: a listing
        the caller has just made)."""
        if names is None:
            names = await self.pending()
        self._unchecked = 0
        excess = len(names) - self.limit if self.limit is not None else 0
        if excess > 0:
            await self.remove(names[:excess])
            self.dropped.inc(excess)
            log.warning("notifications: endpoint %s: queue full (%d events, limit %d): dropped the %d oldest",
                        self.endpoint, len(names), self.limit, excess)
            names = names[excess:]
        self.pending_gauge.set(len(names))
        return names

    async def pending(self) -> list[str]:
        """Names of the queued events, oldest first."""
        try:
            return sorted(n for n in await self.driver.list(self.events_dir) if n.endswith(".json"))
        except PathNotFound:
            return []

    async def read(self, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The events still queued among ``names`` (one delivered meanwhile by another replica is left out)."""
        found = []
        for name in names:
            try:
                found.append((name, json.loads(await self.driver.get_content(f"{self.events_dir}/{name}"))))
            except PathNotFound:
                continue
            except ValueError:  # a torn or foreign object: nothing any receiver could use
                await self.driver.delete_file(f"{self.events_dir}/{name}")
        return found

    async def remove(self, names: list[str]) -> None:
        for name in names:
            await self.driver.delete_file(f"{self.events_dir}/{name}")

    async def hold(self) -> bool:
        """Whether this replica may deliver now: it holds the lease (renewed when half spent) or took it."""
        return await self.lease.hold()

    async def release(self) -> None:
        await self.lease.release()
