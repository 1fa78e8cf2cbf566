"""Delivery of one endpoint's queue: envelopes of up to ``batch`` events, oldest first, POSTed until the
endpoint accepts them (any 2xx or 3xx after redirects, as Distribution), then removed from the queue.
One listing of the queue serves the envelopes of the next ``poll`` seconds (a backlog of thousands of
events is not listed again for every envelope).

Failures are retried at once until ``threshold`` consecutive ones, then after ``backoff``, doubled on
every further failure up to ``maxbackoff`` (Distribution waits ``backoff`` every time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from registry.events import metrics
from registry.events.notifications.config import EndpointConfig
from registry.events.notifications.events import EVENTS_MEDIA_TYPE
from registry.events.notifications.queue import EventQueue

log = logging.getLogger("moorage.notifications")


@dataclass(eq=False)
class Delivery:
    endpoint: EndpointConfig
    queue: EventQueue
    http: httpx.AsyncClient
    poll: float
    wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    failures: int = field(init=False, default=0)
    backlog: list[str] = field(init=False, default_factory=list)  # queued event names as last listed, oldest first
    listed: float = field(init=False, default=0.0)  # monotonic time of that listing

    def __post_init__(self) -> None:
        self.headers = [*self.endpoint.headers, ("Content-Type", EVENTS_MEDIA_TYPE)]
        self.delivered = metrics.notification_delivered.labels(self.endpoint.name)

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # storage trouble: try again later, the events are safe in the queue
                log.exception("notifications: endpoint %s: queue error", self.endpoint.name)
                await self.idle()

    async def step(self) -> None:
        if not await self.queue.hold():
            await self.idle()
            return
        if not self.backlog or time.monotonic() - self.listed > self.poll:
            self.backlog = await self.queue.trim()  # over the limit: the oldest go
            self.listed = time.monotonic()
        if not self.backlog:
            await self.idle()
            return
        names = self.backlog[: self.endpoint.batch]
        batch = await self.queue.read(names)  # those delivered or dropped meanwhile are left out
        if not batch:
            del self.backlog[: len(names)]
            return
        if await self.send([event for _, event in batch]):
            await self.queue.remove([name for name, _ in batch])
            del self.backlog[: len(names)]
            self.delivered.inc(len(batch))
            self.failures = 0
            return
        self.failures += 1
        await asyncio.sleep(self.retry_wait())

    def retry_wait(self) -> float:
        beyond = self.failures - self.endpoint.threshold
        if beyond < 0:
            return 0.0
        return min(self.endpoint.backoff * 2 ** min(beyond, 20), self.endpoint.maxbackoff)

    async def send(self, events: list[dict[str, Any]]) -> bool:
        body = json.dumps({"events": events}).encode()
        try:
            response = await self.http.post(self.endpoint.url, content=body, headers=self.headers,
                                            timeout=self.endpoint.timeout)
        except httpx.HTTPError as e:
            return self.failed(f"{type(e).__name__}: {e}")
        if response.status_code >= 400:
            return self.failed(f"status {response.status_code}")
        metrics.notification_deliveries.labels(self.endpoint.name, "ok").inc()
        return True

    def failed(self, why: str) -> bool:
        metrics.notification_deliveries.labels(self.endpoint.name, "error").inc()
        if self.failures + 1 == self.endpoint.threshold or self.failures == 0:
            log.warning("notifications: endpoint %s (%s) failed: %s; retrying, %d events queued%s",
                        self.endpoint.name, self.endpoint.url, why, len(self.backlog),
                        f" (at most {self.queue.limit}; beyond it the oldest are dropped)" if self.queue.limit else "")
        return False

    async def idle(self) -> None:
        """Until an event is queued here, or ``poll`` seconds (events other replicas queued)."""
        try:
            await asyncio.wait_for(self.wake.wait(), self.poll)
        except TimeoutError:
            pass
        self.wake.clear()
