"""Runs one execution of a rule (under the rule's lease, which the caller holds): plans it unless it is
planned, copies its items that have no outcome yet, several at once, saves the outcomes every
``CHECKPOINT`` seconds and at the end, and finishes it:

* succeeded when every item succeeded; failed otherwise, with each failed item's error;
* the remote stopped answering (``DOWN_LIMIT`` items in a row) → no further item is started, the
  execution fails with the remote's error;
* the remote refused our credentials → the execution stops at once with that one error and is not
  retried (the next trigger tries again);
* a failed execution is retried ``retry.attempts`` times after a growing delay, as a new execution of
  the items that did not succeed, and raises an alert through the notifications;
* what it learnt of the destination's tags goes to the rule's ledger when it ends (``ledger``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from registry.events import metrics
from registry.instance import Registry
from registry.replication.copier import Copier
from registry.replication.executions import FAILED_STATE, RUNNING, SUCCEEDED, Execution, ExecutionStore
from registry.replication.items import COPY, Item, Outcome
from registry.replication.ledger import LedgerStore
from registry.replication.local import LocalSide
from registry.replication.plan import plan_all
from registry.replication.remote import RemoteSide, remote_http
from registry.replication.rules import PUSH, Rule
from registry.replication.side import ItemFailed, Refused, RemoteDown, Side, Transient
from registry.replication.throttle import Throttle
from storage.driver import StorageUnavailable

log = logging.getLogger("moorage.replication")
CHECKPOINT = 1.0  # seconds between saves of the outcomes
DOWN_LIMIT = 3  # items in a row failing for want of an answer: the remote is down, stop
Alert = Callable[[dict[str, Any]], Awaitable[None]]


class Progress(Protocol):
    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Sides:
    source: Side
    destination: Side
    remote: RemoteSide

    @classmethod
    def of(cls, rule: Rule, registry: Registry) -> Sides:
        """This registry and the rule's remote, each on its side of the rule's direction."""
        connections = rule.concurrency * 2 + 2
        remote = RemoteSide(rule.remote, remote_http(rule.remote, connections), rule.requestretries, rule.chunksize,
                            connections)
        local = LocalSide(registry, rule.name)
        return cls(local, remote, remote) if rule.direction == PUSH else cls(remote, local, remote)

    async def close(self) -> None:
        await self.remote.close()


@dataclass(eq=False)
class Runner:
    rule: Rule
    sides: Sides
    store: ExecutionStore
    holder: str
    alert: Alert | None = None
    progress: Progress | None = None
    throttle: Throttle = field(init=False)  # one budget for every execution of the rule here

    def __post_init__(self) -> None:
        self.throttle = Throttle(self.rule.bandwidth)

    async def run(self, execution: Execution) -> Execution:
        """Run (or resume) ``execution`` to its end; returns it finished.  Cancelled (shutdown, lost
        lease), it stays running with the outcomes of its last checkpoint, for whoever runs the rule next
        (nothing is written then: another replica may hold the rule already)."""
        execution.state, execution.holder, execution.error = RUNNING, self.holder, None
        execution.started = execution.started or time.time()
        await self.store.save(execution)
        log.info("replication %s: execution %s (%s, attempt %d) started", self.rule.name, execution.id,
                 execution.trigger, execution.attempt)
        metrics.replication_running.labels(self.rule.name).inc()
        outcomes: dict[int, Outcome] = {}
        items: list[Item] = []
        refused = False
        ledgers = LedgerStore(self.store.driver, self.rule.name)
        ledger = await ledgers.open(self.rule.remote.url, self.rule.recheck)
        copier = Copier(self.rule, self.sides.source, self.sides.destination, self.throttle, ledger=ledger)
        try:
            await self.sides.remote.ping()
            items, outcomes, full = await self.plan(execution, copier.listed)
            if full:  # every tag the rule takes: the ledger's other entries are of the past
                ledger.retain({(i.destination, i.reference) for i in items if i.action == COPY})
            await self.copy(execution, items, outcomes, copier)
        except Refused as e:
            execution.error, refused = str(e), True
        except RemoteDown as e:
            execution.error = f"the remote stopped answering: {e}"
        except (ItemFailed, Transient) as e:  # listing what to copy failed
            execution.error = str(e)
        finally:
            metrics.replication_running.labels(self.rule.name).dec()
        try:
            await ledgers.close(ledger)
        except (StorageUnavailable, OSError) as e:  # its marker stays: the next execution asks the destination
            log.warning("replication %s: saving the ledger: %s", self.rule.name, e)
        await self.finish(execution, items, outcomes, retryable=not refused)
        return execution

    async def plan(self, execution: Execution,
                   listed: dict[str, set[str]]) -> tuple[list[Item], dict[int, Outcome], bool]:
        """The items, their outcomes so far, and whether the items were planned now from the source
        (the destination's tag lists it read go to ``listed``)."""
        items = await self.store.items(execution)
        full = items is None
        if items is None:
            if self.progress is not None:
                self.progress.phase("listing", None)
            items = await plan_all(self.rule, self.sides.source, self.sides.destination, listed)
            await self.store.set_items(execution, items)
            await self.store.save(execution)
        outcomes = await self.store.outcomes(execution)
        return items, outcomes, full

    async def copy(self, execution: Execution, items: list[Item], outcomes: dict[int, Outcome],
                   copier: Copier) -> None:
        pending = [i for i in range(len(items)) if i not in outcomes]
        if self.progress is not None:
            self.progress.phase("copying", len(items))
            self.progress.advance(len(items) - len(pending))
        slots = asyncio.Semaphore(self.rule.concurrency * 2)
        dirty = asyncio.Event()

        async def one(index: int) -> None:
            async with slots:
                if copier.down_streak >= DOWN_LIMIT:
                    return  # the remote is down: leave it for the retry
                item = items[index]
                outcome = await copier.run(item)
                outcomes[index] = outcome
                self.count(item, outcome)
                dirty.set()
                if self.progress is not None:
                    self.progress.advance()

        async def checkpoints() -> None:
            while True:
                await asyncio.sleep(CHECKPOINT)
                if dirty.is_set():
                    dirty.clear()
                    await self.checkpoint(execution, outcomes)

        saver = asyncio.create_task(checkpoints())
        tasks = [asyncio.create_task(one(i)) for i in pending]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            saver.cancel()
            await asyncio.gather(saver, return_exceptions=True)
        if copier.down_streak >= DOWN_LIMIT:
            last = next(o.note for o in reversed(list(outcomes.values())) if not o.ok)
            execution.error = f"the remote stopped answering: {last}"

    def count(self, item: Item, outcome: Outcome) -> None:
        metrics.replication_items.labels(self.rule.name, outcome.status).inc()
        if outcome.bytes:
            metrics.replication_bytes.labels(self.rule.name).inc(outcome.bytes)
        lag = item.lag(time.time())
        if lag is not None and outcome.ok:
            metrics.replication_lag.labels(self.rule.name).observe(lag)
        if not outcome.ok:
            log.warning("replication %s: %s failed: %s", self.rule.name, item, outcome.note)

    async def checkpoint(self, execution: Execution, outcomes: dict[int, Outcome]) -> None:
        snapshot = dict(outcomes)
        execution.tally(snapshot)
        await self.store.save_outcomes(execution, snapshot)
        await self.store.save(execution)

    async def finish(self, execution: Execution, items: list[Item], outcomes: dict[int, Outcome],
                     retryable: bool) -> None:
        execution.tally(outcomes)
        complete = len(outcomes) == len(items) and all(o.ok for o in outcomes.values())
        execution.state = SUCCEEDED if complete and execution.error is None else FAILED_STATE
        execution.finished = time.time()
        await self.store.save_outcomes(execution, outcomes)
        await self.store.finish(execution)
        metrics.replication_executions.labels(self.rule.name, execution.trigger, execution.state).inc()
        log.info("replication %s: execution %s %s: %s in %.1fs, %d bytes%s", self.rule.name, execution.id,
                 execution.state, counts_text(execution), execution.duration or 0.0, execution.bytes,
                 f" ({execution.error})" if execution.error else "")
        if execution.state == FAILED_STATE:
            retry = await self.retry(execution, items, outcomes) if retryable else None
            if self.alert is not None:
                await self.alert(alert_event(execution, retry))

    async def retry(self, execution: Execution, items: list[Item], outcomes: dict[int, Outcome]) -> Execution | None:
        """A new execution of what did not succeed (planned anew when planning failed), after the rule's
        backoff; None when no retry is left."""
        if execution.attempt > self.rule.retry.attempts:
            return None
        remaining = [item for i, item in enumerate(items) if i not in outcomes or not outcomes[i].ok]
        planned = remaining if execution.planned is not None else None
        delay = self.rule.retry.delay(execution.attempt)
        retry = await self.store.create(self.rule.name, "retry", planned, attempt=execution.attempt + 1,
                                        retry_of=execution.id, not_before=time.time() + delay)
        log.info("replication %s: execution %s retried as %s in %.0fs", self.rule.name, execution.id, retry.id, delay)
        return retry


def counts_text(execution: Execution) -> str:
    shown = [f"{count} {name}" for name, count in execution.counts.items() if count]
    return ", ".join(shown) or "nothing to do"


def alert_event(execution: Execution, retry: Execution | None) -> dict[str, Any]:
    """The notification of a failed execution (action ``replication``; see docs/replication.md)."""
    return {
        "action": "replication",
        "target": {"rule": execution.rule, "execution": execution.id},
        "replication": {
            "rule": execution.rule, "execution": execution.id, "state": execution.state,
            "trigger": execution.trigger, "attempt": execution.attempt, "error": execution.error,
            "counts": execution.counts, "retry": retry.id if retry is not None else None,
            "retryAt": retry.not_before if retry is not None else None,
        },
    }
