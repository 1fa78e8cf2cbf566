"""What a registry process knows about garbage collection: whether a GC runs, and which one ran last.

Pushes need it for two things (docs/gc.md): whether they must do the GC handshake (``storage.sweep``),
and whether what this process observed in storage earlier (the blob-descriptor cache) can still be
trusted.  Both rest on one rule that GC keeps: a collector waits ``GC_NOTICE`` seconds after writing its
lease before it reads any repository, and ``GC_NOTICE`` is longer than a view is trusted (``VIEW_TTL``).

A view of the lease read at time ``c`` that shows no running GC therefore proves that no GC deletes
anything, nor misses a manifest in its mark, before ``c + VIEW_TTL``: one that held the lease at ``c``
would show, one that takes it later marks after ``c + GC_NOTICE``.  Two views that show no running GC
and the same ``token`` (the lease keeps its last holder's token when released) prove that no GC ran
between them.  The view is cached for ``VIEW_TTL``: a push costs no lease read.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from storage import paths
from storage.driver import PathNotFound, StorageDriver

LEASE_NAME = "gc"
VIEW_TTL = 3.0  # seconds a view of the lease is trusted
GC_NOTICE = VIEW_TTL + 1.0  # seconds a collector waits after taking the lease before it marks


@dataclass(frozen=True, slots=True)
class GCView:
    read_at: float  # monotonic time the read was sent (the view describes a moment after it)
    token: str | None  # the token of the last collector that took the lease (None: never taken)
    running: bool  # a collector holds the lease (unexpired)

    def fresh(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.read_at < VIEW_TTL

    def quiet(self) -> bool:
        """Fresh, and no collector runs: nothing is being deleted until at least ``VIEW_TTL`` after it."""
        return not self.running and self.fresh()

    def same_era(self, other: GCView) -> bool:
        """No collector took the lease between the two views, and none ran at either."""
        return not self.running and not other.running and self.token == other.token


class GCWatch:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._view: GCView | None = None
        self._reading: asyncio.Future[GCView] | None = None

    async def view(self) -> GCView:
        """The lease as seen at most ``VIEW_TTL`` ago (one read at a time serves every caller)."""
        view = self._view
        if view is not None and view.fresh():
            return view
        return await self.read()

    async def read(self) -> GCView:
        """The lease as it is now."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(self._done)
        return await asyncio.shield(self._reading)

    async def _read(self) -> GCView:
        view = await read_view(self.driver)
        if self._view is None or view.read_at >= self._view.read_at:
            self._view = view
        return view

    def _done(self, reading: asyncio.Future[GCView]) -> None:
        self._reading = None
        if not reading.cancelled():
            reading.exception()  # heard: a caller that gave up must not leave it unretrieved


async def read_view(driver: StorageDriver) -> GCView:
    started = time.monotonic()
    try:
        found = json.loads(await driver.get_content(paths.lease(LEASE_NAME)))
    except (PathNotFound, ValueError):
        return GCView(started, None, False)
    if not isinstance(found, dict):
        return GCView(started, None, False)
    token = found.get("token")
    return GCView(started, token if isinstance(token, str) else None, float(found.get("expires", 0)) > time.time())
