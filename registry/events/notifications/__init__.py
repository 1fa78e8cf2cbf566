"""Webhook notifications compatible with Distribution's ``notifications.endpoints``, delivered from a
durable queue in storage (see ``queue``): events survive restarts and long receiver outages, and with
several replicas each endpoint's queue is delivered by one of them at a time.

An event is queued (one storage object per endpoint that wants it) right after its request is answered,
before the request's task ends: a graceful shutdown waits for it. ``config`` reads the section,
``events`` shapes Distribution's envelope, ``delivery`` sends and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from registry.config import Config, ConfigError
from registry.events import metrics
from registry.events.activity import activity
from registry.events.notifications.config import NotificationsConfig, parse_notifications
from registry.events.notifications.delivery import Delivery
from registry.events.notifications.events import EventFactory
from registry.events.notifications.queue import EventQueue
from registry.events.observe import Exchange
from storage import paths
from storage.digests import InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("moorage.notifications")


class Notifier:
    def __init__(self, config: Config, settings: NotificationsConfig, driver: StorageDriver) -> None:
        self.driver = driver
        self.factory = EventFactory(config)
        self.http = httpx.AsyncClient(follow_redirects=True)
        self.deliveries = [
            Delivery(endpoint, EventQueue(driver, endpoint.name, settings.lease), self.http, settings.poll)
            for endpoint in settings.endpoints
        ]
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(cls, config: Config, driver: StorageDriver) -> Notifier | None:
        try:
            settings = parse_notifications(config.notifications)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return None if settings is None else cls(config, settings, driver)

    async def heard(self, exchange: Exchange) -> None:
        done = activity(exchange)
        if done is None:
            return
        wanting = [d for d in self.deliveries if d.endpoint.wants(done.action, done.media_type)]
        if not wanting:
            return
        event = self.factory.event(exchange, done)
        if done.kind == "blob" and done.action != "delete" and "size" not in event["target"]:
            size = await self.blob_size(done.digest)
            if size is not None:
                event["target"]["size"] = event["target"]["length"] = size
        for delivery in wanting:
            await delivery.queue.put(event)
            metrics.notification_events.labels(delivery.endpoint.name).inc()
            delivery.wake.set()

    async def blob_size(self, digest: str | None) -> int | None:
        try:
            return (await self.driver.stat(paths.blob_data(parse_digest(digest or "")))).size
        except (InvalidDigest, PathNotFound):
            return None

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
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for delivery in self.deliveries:
            with contextlib.suppress(Exception):
                await delivery.queue.release()
        await self.http.aclose()
