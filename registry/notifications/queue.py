"""The durable event queue of one endpoint, kept in storage through the driver (filesystem or S3), so a
restart loses nothing and every replica sees the same queue.

Layout below the storage root, beside Distribution's ``/docker`` tree (which Distribution ignores):
``/moorage/notifications/<endpoint>/events/<ns-time>-<event id>.json`` one object per event, names
in time order; ``/moorage/notifications/<endpoint>/lease`` the replica delivering to the endpoint.

The lease makes one replica at a time deliver an endpoint's queue. The driver offers no
compare-and-swap, so a replica takes a free or expired lease by writing it, waiting ``settle`` seconds
and reading it back: of replicas racing, only the last writer reads itself and delivers. A replica that
stops releases its lease; one that dies leaves it to expire after ``lease`` seconds.  Should two replicas
ever both deliver (a write slower than ``settle``), the receiver gets an event twice under the same id:
delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from storage.driver import PathNotFound, StorageDriver

ROOT = "/moorage/notifications"


class EventQueue:
    def __init__(self, driver: StorageDriver, endpoint: str, owner: str, lease: float, settle: float = 0.5) -> None:
        self.driver = driver
        self.dir = f"{ROOT}/{endpoint}"
        self.events_dir = f"{self.dir}/events"
        self.lease_path = f"{self.dir}/lease"
        self.owner = owner
        self.lease_seconds = lease
        self.settle = settle
        self.held_until = 0.0  # our lease's expiry as last written (monotonic time)

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

    # ------------------------------------------------------------------------------------- lease

    async def _lease(self) -> dict[str, Any] | None:
        try:
            lease = json.loads(await self.driver.get_content(self.lease_path))
        except (PathNotFound, ValueError):
            return None
        return lease if isinstance(lease, dict) else None

    async def _write_lease(self) -> None:
        expires = time.time() + self.lease_seconds
        await self.driver.put_content(self.lease_path, json.dumps({"owner": self.owner, "expires": expires}).encode())
        self.held_until = time.monotonic() + self.lease_seconds

    async def hold(self) -> bool:
        """Whether this replica may deliver now: it holds the lease (renewed when half spent) or took it."""
        lease = await self._lease()
        if lease is not None and lease.get("owner") == self.owner:
            if self.held_until - time.monotonic() < self.lease_seconds / 2:
                await self._write_lease()
            return True
        if lease is not None and float(lease.get("expires", 0)) > time.time():
            self.held_until = 0.0
            return False
        await self._write_lease()
        await asyncio.sleep(self.settle)
        lease = await self._lease()
        return lease is not None and lease.get("owner") == self.owner

    async def release(self) -> None:
        lease = await self._lease()
        if lease is not None and lease.get("owner") == self.owner:
            await self.driver.delete_file(self.lease_path)
        self.held_until = 0.0

