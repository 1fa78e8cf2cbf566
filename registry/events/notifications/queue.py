"""The durable event queue of one endpoint, kept in storage through the driver (filesystem or S3), so a
restart loses nothing and every replica sees the same queue.

Events are one object each under ``paths.notification_events(endpoint)`` (in Moorage's own directory,
which Distribution ignores), named ``<ns-time>-<event id>.json`` so that a listing is in time order.

One replica at a time delivers an endpoint's queue: the one holding the lease ``notifications-<endpoint>``
(``storage.lease``: written, read back after ``settle`` seconds, renewed while held, released on shutdown,
expired ``lease`` seconds after a crash). Should two replicas ever both deliver (a write slower than
``settle``), the receiver gets an event twice under the same id: delivery is at-least-once.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.lease import Lease


class EventQueue:
    def __init__(self, driver: StorageDriver, endpoint: str, lease: float, settle: float = 0.5) -> None:
        self.driver = driver
        self.events_dir = paths.notification_events(endpoint)
        self.lease = Lease(driver, f"notifications-{endpoint}", ttl=lease, settle=settle)
        self.renewed = 0.0  # monotonic time of our last write of the lease

    async def put(self, event: dict[str, Any]) -> None:
        name = f"{time.time_ns():020d}-{uuid.UUID(event['id']).hex}.json"
        await self.driver.put_content(f"{self.events_dir}/{name}", json.dumps(event).encode())

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
        current = await self.lease.current()
        if current is not None and current.get("token") == self.lease.token:
            if time.monotonic() - self.renewed > self.lease.ttl / 2:
                await self.lease.renew()
                self.renewed = time.monotonic()
            return True
        if current is not None or not await self.lease.acquire():
            return False
        self.renewed = time.monotonic()
        return True

    async def release(self) -> None:
        await self.lease.release()
