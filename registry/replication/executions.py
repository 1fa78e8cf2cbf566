"""Executions of replication rules, kept in the storage (no database needed; every replica sees them).

Below ``_moorage/replication/<rule>/``::

    executions/<id>/execution.json   state, counts, bytes, times, the execution's own error
    executions/<id>/items.json       what it copies, written once when planned
    executions/<id>/outcomes.json    what became of each item so far (rewritten at checkpoints)
    active/<id>                      present while the execution is queued or running
    schedule.json                    when the rule's schedule last started an execution

Ids sort by creation time (``<ns time>-<random>``).  An execution resumes from its outcomes: items with
an outcome are not run again, and what a killed run had sent is on the destination already (its HEAD
says so), so nothing that arrived is copied twice.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.replication.items import FAILED, Item, Outcome
from storage import paths
from storage.driver import PathNotFound, StorageDriver

QUEUED, RUNNING, SUCCEEDED, FAILED_STATE = "queued", "running", "succeeded", "failed"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED_STATE)
COUNTED = ("copied", "unchanged", "deleted", "skipped", "failed")


@dataclass(slots=True)
class Execution:
    id: str
    rule: str
    trigger: str  # event, schedule, manual, retry
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempt: int = 1  # 2 and more: a retry of the execution ``retry_of``
    retry_of: str | None = None
    not_before: float | None = None  # a retry waits until then
    error: str | None = None  # why the execution as a whole failed (the items' errors are theirs)
    planned: int | None = None  # items, once planned
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    bytes: int = 0
    blobs: int = 0
    holder: str | None = None  # the replica that runs it (host:pid)

    @property
    def done(self) -> bool:
        return self.state in (SUCCEEDED, FAILED_STATE)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def tally(self, outcomes: dict[int, Outcome]) -> None:
        self.counts = dict.fromkeys(COUNTED, 0)
        for outcome in outcomes.values():
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.bytes = sum(o.bytes for o in outcomes.values())
        self.blobs = sum(o.blobs for o in outcomes.values())

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["duration"] = self.duration
        return found

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Execution:
        names = cls.__dataclass_fields__.keys()  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in raw.items() if k in names})


def new_id() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


class ExecutionStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    def _dir(self, rule: str, execution: str) -> str:
        return f"{paths.replication_rule(rule)}/executions/{execution}"

    def _active(self, rule: str) -> str:
        return f"{paths.replication_rule(rule)}/active"

    async def create(self, rule: str, trigger: str, items: list[Item] | None = None, *, attempt: int = 1,
                     retry_of: str | None = None, not_before: float | None = None) -> Execution:
        execution = Execution(new_id(), rule, trigger, attempt=attempt, retry_of=retry_of, not_before=not_before)
        if items is not None:
            await self.set_items(execution, items)
        await self.save(execution)
        await self.driver.put_content(f"{self._active(rule)}/{execution.id}", execution.id.encode())
        return execution

    async def save(self, execution: Execution) -> None:
        body = json.dumps(execution.as_json()).encode()
        await self.driver.put_content(f"{self._dir(execution.rule, execution.id)}/execution.json", body)

    async def finish(self, execution: Execution) -> None:
        await self.save(execution)
        await self.driver.delete_file(f"{self._active(execution.rule)}/{execution.id}")

    async def load(self, rule: str, execution: str) -> Execution | None:
        try:
            raw = await self.driver.get_content(f"{self._dir(rule, execution)}/execution.json")
        except PathNotFound:
            return None
        try:
            return Execution.from_json(json.loads(raw))
        except (ValueError, TypeError):
            return None

    async def set_items(self, execution: Execution, items: list[Item]) -> None:
        body = json.dumps([item.as_json() for item in items]).encode()
        await self.driver.put_content(f"{self._dir(execution.rule, execution.id)}/items.json", body)
        execution.planned = len(items)

    async def items(self, execution: Execution) -> list[Item] | None:
        """None while the execution is not planned yet."""
        try:
            raw = await self.driver.get_content(f"{self._dir(execution.rule, execution.id)}/items.json")
        except PathNotFound:
            return None
        return [Item.from_json(entry) for entry in json.loads(raw)]

    async def outcomes(self, execution: Execution) -> dict[int, Outcome]:
        try:
            raw = await self.driver.get_content(f"{self._dir(execution.rule, execution.id)}/outcomes.json")
        except PathNotFound:
            return {}
        try:
            return {int(k): Outcome.from_json(v) for k, v in json.loads(raw).items()}
        except (ValueError, TypeError, KeyError):
            return {}

    async def save_outcomes(self, execution: Execution, outcomes: dict[int, Outcome]) -> None:
        body = json.dumps({str(k): v.as_json() for k, v in sorted(outcomes.items())}).encode()
        await self.driver.put_content(f"{self._dir(execution.rule, execution.id)}/outcomes.json", body)

    async def active(self, rule: str) -> list[str]:
        """Ids of the rule's queued and running executions, oldest first."""
        try:
            return sorted(await self.driver.list(self._active(rule)))
        except PathNotFound:
            return []

    async def ids(self, rule: str) -> list[str]:
        """Every execution of the rule kept, newest first."""
        try:
            return sorted(await self.driver.list(f"{paths.replication_rule(rule)}/executions"), reverse=True)
        except PathNotFound:
            return []

    async def recent(self, rule: str, limit: int) -> list[Execution]:
        found = []
        for execution_id in (await self.ids(rule))[:limit]:
            execution = await self.load(rule, execution_id)
            if execution is not None:
                found.append(execution)
        return found

    async def prune(self, rule: str, keep: int) -> None:
        """Remove the oldest finished executions beyond the ``keep`` newest."""
        active = set(await self.active(rule))
        for execution_id in (await self.ids(rule))[keep:]:
            if execution_id not in active:
                try:
                    await self.driver.delete(self._dir(rule, execution_id))
                except PathNotFound:
                    pass

    async def failed_items(self, execution: Execution) -> list[tuple[Item, Outcome]]:
        """The items that failed, with their outcome (the API and UI list them)."""
        items = await self.items(execution) or []
        outcomes = await self.outcomes(execution)
        return [(items[i], o) for i, o in sorted(outcomes.items()) if o.status == FAILED and i < len(items)]

    async def last_scheduled(self, rule: str) -> float | None:
        try:
            return float(json.loads(await self.driver.get_content(f"{paths.replication_rule(rule)}/schedule.json"))
                         ["last"])
        except (PathNotFound, ValueError, KeyError, TypeError):
            return None

    async def mark_scheduled(self, rule: str, when: float) -> None:
        body = json.dumps({"last": when}).encode()
        await self.driver.put_content(f"{paths.replication_rule(rule)}/schedule.json", body)
