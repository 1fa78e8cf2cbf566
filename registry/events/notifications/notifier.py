"""``Notifier``: the registry's events as Distribution's webhook notifications, delivered from a durable
queue in storage (see ``queue``): events survive restarts and long receiver outages, and with several
replicas each endpoint's queue is delivered by one of them at a time.

Events come from the write path's domain events (pushes, mounts, deletes) and the read handlers' pulls
(``registry/writes/events.py``); the mirror filling its cache sends none, as Distribution's proxy.  An
event is queued (one storage object per endpoint that wants it) right after its request is answered,
before the request's task ends: a graceful shutdown waits for it. ``config`` reads the section,
``events`` shapes Distribution's envelope, ``delivery`` sends and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import uuid
from typing import Any

import httpx

from registry.config import Config
from registry.events import metrics
from registry.events.notifications.config import NotificationsConfig
from registry.events.notifications.delivery import Delivery
from registry.events.notifications.events import EventFactory, media_type
from registry.events.notifications.queue import EventQueue
from registry.writes.actor import MIRROR
from registry.writes.events import EventKind, RepositoryEvent
from storage.background import stop
from storage.driver import StorageDriver

log = logging.getLogger("moorage.notifications")


class Notifier:
    kinds = frozenset(EventKind)

    def __init__(self, config: Config, settings: NotificationsConfig, driver: StorageDriver) -> None:
        self.driver = driver
        self.factory = EventFactory(config)
        self.http = httpx.AsyncClient(follow_redirects=True)
        self.deliveries = [
            Delivery(endpoint, EventQueue(driver, endpoint.name, settings.lease, limit=endpoint.maxevents), self.http,
                     settings.poll)
            for endpoint in settings.endpoints
        ]
        self.tasks: list[asyncio.Task[None]] = []

    async def on_event(self, event: RepositoryEvent) -> None:
        if event.actor.kind == MIRROR:
            return
        wanting = [d for d in self.deliveries if d.endpoint.wants(event.action, media_type(event))]
        if not wanting:
            return
        for envelope_event in self.factory.events(event):
            for delivery in wanting:
                await delivery.queue.put(envelope_event)
                metrics.notification_events.labels(delivery.endpoint.name).inc()
                delivery.wake.set()

    async def publish(self, event: dict[str, Any]) -> None:
        """Queue one of Moorage's own events (``action`` and what it is about: a failed replication) for
        every endpoint that wants its action; its ``id``, ``timestamp`` and ``source`` are added here."""
        event = {"id": str(uuid.uuid4()),
                 "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
                 **event, "source": self.factory.source}
        for delivery in self.deliveries:
            if delivery.endpoint.wants(event["action"], None):
                await delivery.queue.put(event)
                metrics.notification_events.labels(delivery.endpoint.name).inc()
                delivery.wake.set()

    def start(self) -> None:
        for delivery in self.deliveries:
            log.info("notifications: endpoint %s (%s), timeout=%gs threshold=%d backoff=%gs", delivery.endpoint.name,
                     delivery.endpoint.url, delivery.endpoint.timeout, delivery.endpoint.threshold,
                     delivery.endpoint.backoff)
            self.tasks.append(asyncio.create_task(delivery.run(), name=f"notify-{delivery.endpoint.name}"))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            await stop(task)
        # only a process that delivered may hold the leases (forked workers share the lease tokens)
        for delivery in self.deliveries if self.tasks else ():
            with contextlib.suppress(Exception):
                await delivery.queue.release()
        await self.http.aclose()
