"""An expiring lease stored in the storage itself: one holder at a time across replicas.

The lease is a small JSON object (holder, token, expiry).  A process takes it when it is absent or
expired.  On a local filesystem every write of the lease (taking, renewing, releasing) happens under an
exclusive lock of ``<lease>.lock`` (``flock``), so the process that took it holds it, at once.
Elsewhere (S3) it reads the lease back after ``settle`` seconds: of several processes that wrote at
once, the one whose write came last finds its own token and holds the lease; the others back off.
The holder renews it while it works; a holder that died stops renewing and the lease expires after
``ttl``.  Released, the lease keeps its last holder's token (with no expiry left): readers can tell
whether anyone took it since they last looked (``storage.gc_watch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from storage import paths
from storage.driver import PathNotFound, StorageDriver


class LeaseLost(Exception):
    """Another process holds the lease now: the work it guards must stop."""


async def held(driver: StorageDriver, name: str) -> dict[str, Any] | None:
    """The lease ``name`` as stored, or None when nobody holds it (absent, garbled or expired).

    Reading it takes no holder identity: a manifest PUT asks this on every request."""
    try:
        found = json.loads(await driver.get_content(paths.lease(name)))
    except (PathNotFound, ValueError):
        return None
    if not isinstance(found, dict) or float(found.get("expires", 0)) <= time.time():
        return None
    return found


class Lease:
    def __init__(self, driver: StorageDriver, name: str, ttl: float = 600.0, settle: float = 1.0) -> None:
        self.driver = driver
        self.name = name
        self.path = paths.lease(name)
        self.ttl = ttl
        self.settle = settle
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.token = uuid.uuid4().hex
        self.written_at = 0.0  # monotonic time our last write of the lease began

    def valid_for(self) -> float:
        """How much longer, at least, the lease is ours by our own clock (negative: it may have expired)."""
        return self.ttl - (time.monotonic() - self.written_at)

    async def current(self) -> dict[str, Any] | None:
        """The lease as stored, or None when nobody holds it (absent, garbled or expired)."""
        return await held(self.driver, self.name)

    async def acquire(self) -> bool:
        """Take the lease if nobody else holds it; True when this process holds it now."""
        async with self.exclusive() as locked:
            found = await self.current()
            if found is not None and found.get("token") != self.token:
                return False
            await self._write()
            if locked:
                return True
        await asyncio.sleep(self.settle)
        found = await self.current()
        return found is not None and found.get("token") == self.token

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """The lease's lock file, held (True) while the body reads and writes the lease; False where the
        storage is no local filesystem.  Polled without blocking: it is held for one read and one write."""
        local = self.driver.local_path(self.path + ".lock")
        if local is None:
            yield False
            return
        os.makedirs(os.path.dirname(local), exist_ok=True)
        fd = os.open(local, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.005)
            yield True
        finally:
            os.close(fd)  # releases the lock

    async def hold(self) -> bool:
        """For work a process keeps doing while it may (a queue, a replication rule): whether it holds the
        lease now, renewed when half spent, or took it."""
        current = await self.current()
        if current is not None and current.get("token") == self.token:
            if time.monotonic() - self.written_at > self.ttl / 2:
                await self.renew()
            return True
        if current is not None or not await self.acquire():
            return False
        return True

    async def renew(self) -> None:
        """Extend the lease; raises LeaseLost when someone else took it meanwhile."""
        async with self.exclusive():
            found = await self.current()
            if found is None or found.get("token") != self.token:
                raise LeaseLost(f"lease {self.path} lost")
            await self._write()

    async def release(self) -> None:
        """Free the lease; its token stays, expired (see the module's doc)."""
        async with self.exclusive():
            found = await self.current()
            if found is not None and found.get("token") == self.token:
                await self._write(expires=0.0)

    async def _write(self, expires: float | None = None) -> None:
        began = time.monotonic()
        body = {"holder": self.holder, "token": self.token,
                "expires": time.time() + self.ttl if expires is None else expires}
        await self.driver.put_content(self.path, json.dumps(body).encode())
        self.written_at = began
