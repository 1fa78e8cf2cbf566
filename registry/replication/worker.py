"""Replication inside ``moorage serve``: every replica runs a loop per rule; the one holding the rule's
lease does the rule's work, the others only watch the lease (and take over when it expires).

The holder, every ``poll`` seconds or as soon as something here wakes it:

* turns queued events into one execution (event rules): the write path's events are queued in storage
  by whichever replica made the push or delete (``EventConsumer``, subscribed to the registry's event
  bus, with the notifications' queue), removed only once the execution that copies them is stored, so a
  restart loses none;
* starts an execution when the schedule is due (schedule rules; the last run's time is in storage);
* runs the rule's queued executions (manual runs from the API or the UI, retries once due) and resumes
  one that was running when its replica died, oldest first, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from registry.events.notifications.events import EventFactory
from registry.events.notifications.queue import EventQueue
from registry.instance import Registry
from registry.replication.config import ReplicationConfig
from registry.replication.executions import Execution, ExecutionStore
from registry.replication.lease import RuleLease
from registry.replication.plan import plan_events, wanted
from registry.replication.rules import EVENT, MANUAL, SCHEDULE, Rule
from registry.replication.runner import Alert, Runner, Sides
from registry.replication.schedule import next_run
from registry.writes.actor import MIRROR
from registry.writes.events import EventKind, RepositoryEvent
from storage import paths
from storage.lease import LeaseLost

log = logging.getLogger("moorage.replication")
EVENT_BATCH = 1000  # events turned into one execution at most
PRUNE_EVERY = 600.0  # seconds between prunings of old executions


class EventConsumer:
    """An event rule's end of the write path's events: the pushes and deletes it acts on, queued in storage
    as the notifications' events (the same queue code, a queue of its own) and the rule's worker woken."""

    kinds = frozenset({EventKind.MANIFEST_PUSHED, EventKind.TAG_SET, EventKind.TAG_DELETED,
                       EventKind.MANIFEST_DELETED})

    def __init__(self, rule: Rule, queue: EventQueue, wake: asyncio.Event, factory: EventFactory) -> None:
        self.rule = rule
        self.queue = queue
        self.wake = wake
        self.factory = factory

    async def on_event(self, event: RepositoryEvent) -> None:
        if event.actor.kind == MIRROR:  # a cache filled, not a push
            return
        queued = False
        for notification in self.factory.events(event):
            if wanted(self.rule, event.action, event.target, event.repository, notification["target"].get("tag")):
                await self.queue.put(notification)
                queued = True
        if queued:
            self.wake.set()


class RuleWorker:
    def __init__(self, rule: Rule, registry: Registry, store: ExecutionStore, config: ReplicationConfig,
                 alert: Alert | None) -> None:
        self.rule = rule
        self.registry = registry
        self.store = store
        self.config = config
        self.alert = alert
        self.lease = RuleLease(registry.driver, rule.name, config.lease)
        self.wake = asyncio.Event()
        self.queue = (EventQueue(registry.driver, f"replication-{rule.name}", config.lease,
                                 directory=paths.replication_events(rule.name))
                      if rule.trigger == EVENT else None)
        self.sides: Sides | None = None
        self.pruned = 0.0

    def runner(self) -> Runner:
        if self.sides is None:
            self.sides = Sides.of(self.rule, self.registry)
        return Runner(self.rule, self.sides, self.store, self.lease.holder, self.alert)

    async def loop(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                log.warning("replication %s: another replica took the rule over", self.rule.name)
            except Exception:  # storage trouble: the work is safe in storage, try again later
                log.exception("replication %s: error", self.rule.name)
            await self.idle()

    async def idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.config.poll)
        self.wake.clear()

    async def step(self) -> None:
        if not await self.lease.hold():
            return
        now = time.time()
        if self.rule.trigger == SCHEDULE:
            await self.schedule(now)
        if self.queue is not None:
            await self.take_events()
        for execution_id in await self.store.active(self.rule.name):
            execution = await self.store.load(self.rule.name, execution_id)
            if execution is None or execution.done:
                continue
            if execution.not_before is not None and execution.not_before > time.time():
                continue
            async with self.lease.kept():
                await self.runner().run(execution)
        if now - self.pruned > PRUNE_EVERY:
            self.pruned = now
            await self.store.prune(self.rule.name, self.config.keep)

    async def schedule(self, now: float) -> None:
        last = await self.store.last_scheduled(self.rule.name)
        if last is None and self.rule.cron is not None:
            await self.store.mark_scheduled(self.rule.name, now)  # counts from now: the first run is the next
            return
        if next_run(self.rule, last, now) <= now:
            await self.store.mark_scheduled(self.rule.name, now)
            await self.store.create(self.rule.name, SCHEDULE)

    async def take_events(self) -> None:
        assert self.queue is not None
        names = await self.queue.pending()
        if not names:
            return
        batch = await self.queue.read(names[:EVENT_BATCH])
        items = plan_events(self.rule, [event for _, event in batch])
        if items:
            await self.store.create(self.rule.name, EVENT, items)
        await self.queue.remove([name for name, _ in batch])

    async def close(self) -> None:
        await self.lease.release()
        if self.sides is not None:
            await self.sides.close()


class Replication:
    """The rules' workers of this process, and what the API, the UI and notifications ask of them."""

    def __init__(self, registry: Registry, config: ReplicationConfig) -> None:
        self.config = config
        self.factory = EventFactory(registry.config)
        self.store = ExecutionStore(registry.driver)
        self.alert: Alert | None = None  # where failed executions are announced (the notifications)
        self.workers = {name: RuleWorker(rule, registry, self.store, config, self.publish)
                        for name, rule in config.rules.items()}
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(cls, registry: Registry) -> Replication | None:
        """None when no rule is configured."""
        config = registry.config.replication.replication()
        return None if config is None else cls(registry, config)

    async def publish(self, event: dict[str, Any]) -> None:
        if self.alert is not None:
            await self.alert(event)

    @property
    def rules(self) -> dict[str, Rule]:
        return self.config.rules

    def consumers(self) -> list[EventConsumer]:
        return [EventConsumer(w.rule, w.queue, w.wake, self.factory) for w in self.workers.values()
                if w.queue is not None]

    def start(self) -> None:
        for name, worker in self.workers.items():
            log.info("replication: rule %s (%s %s, %s)", name, worker.rule.direction, worker.rule.remote.url,
                     worker.rule.trigger)
            self.tasks.append(asyncio.create_task(worker.loop(), name=f"replication-{name}"))

    async def trigger(self, rule: str) -> Execution:
        """A manual run: queued in storage, run by whichever replica holds the rule (soon this one)."""
        execution = await self.store.create(rule, MANUAL)
        self.workers[rule].wake.set()
        return execution

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # only the process that ran the rules may release their leases (forked workers share the tokens)
        for worker in self.workers.values() if self.tasks else ():
            await worker.close()
