"""A rule run by hand (``moorage replicate run``, registry.replication.cli): here when no replica holds the
rule, else queued for the one that does and followed from the storage; ``--dry-run`` plans and writes nothing."""

from __future__ import annotations

import asyncio
import sys

from registry.config import Config
from registry.events.notifications.factory import build_notifier
from registry.instance import Registry
from registry.maintenance.progress import TerminalProgress
from registry.replication.copier import Copier
from registry.replication.executions import SUCCEEDED, Execution, ExecutionStore
from registry.replication.items import Item, Outcome
from registry.replication.lease import RuleLease
from registry.replication.plan import plan_all
from registry.replication.rules import MANUAL, Rule
from registry.replication.runner import Runner, Sides
from registry.replication.side import ItemFailed, Refused, Transient
from registry.replication.throttle import Throttle

FOLLOW_EVERY = 0.5  # seconds between looks at an execution another replica runs


async def execute(config: Config, rule: Rule, lease_ttl: float) -> int:
    """Run here when no replica holds the rule; else queue the run for the replica that does and follow
    it (taking it over, should that replica die before it is done)."""
    registry = Registry.build(config)
    sides = Sides.of(rule, registry)
    lease = RuleLease(registry.driver, rule.name, lease_ttl)
    notifier = build_notifier(config, registry.driver)
    progress = TerminalProgress(prefix=f"replicate {rule.name}")
    store = ExecutionStore(registry.driver)
    execution: Execution | None = None
    try:
        while not await lease.hold():
            if execution is None:
                execution = await store.create(rule.name, MANUAL)
                print(f"replicate: {await lease.current_holder()} runs {rule.name}: queued there as execution "
                      f"{execution.id}", file=sys.stderr)
            execution = await follow(store, execution, progress)
            if execution.done:
                return report(rule, execution, await store.failed_items(execution))
            await asyncio.sleep(FOLLOW_EVERY)
        execution = execution or await store.create(rule.name, MANUAL)
        runner = Runner(rule, sides, store, lease.holder, notifier.publish if notifier is not None else None, progress)
        async with lease.kept():
            execution = await runner.run(execution)
        progress.close()
        return report(rule, execution, await store.failed_items(execution))
    finally:
        await lease.release()
        await sides.close()
        if notifier is not None:
            await notifier.close()
        await registry.close()


async def follow(store: ExecutionStore, execution: Execution, progress: TerminalProgress) -> Execution:
    """The execution as another replica runs it, its progress shown."""
    current = await store.load(execution.rule, execution.id) or execution
    if current.planned is not None:
        done = sum(current.counts.values())
        if progress.name != "copying":
            progress.phase("copying", current.planned)
        progress.advance(done - progress.count)
    if current.done:
        progress.close()
    return current


def report(rule: Rule, execution: Execution, failed: list[tuple[Item, Outcome]]) -> int:
    """The failed items and the outcome on the terminal; 0 only when every item succeeded."""
    for item, outcome in failed:
        print(f"failed: {item}: {outcome.note}", file=sys.stderr)
    if execution.error:
        print(f"error: {execution.error}", file=sys.stderr)
    counts = ", ".join(f"{n} {k}" for k, n in execution.counts.items() if n) or "nothing to do"
    print(f"replicate {rule.name}: execution {execution.id} {execution.state} (on {execution.holder}): {counts}; "
          f"{execution.bytes} bytes in {execution.duration or 0:.1f}s")
    return 0 if execution.state == SUCCEEDED else 1


async def dry_run(config: Config, rule: Rule) -> int:
    registry = Registry.build(config)
    sides = Sides.of(rule, registry)
    try:
        await sides.remote.ping()
        items = await plan_all(rule, sides.source, sides.destination)
        copier = Copier(rule, sides.source, sides.destination, Throttle(0), dry_run=True)
        failed = 0
        for item in items:
            outcome = await copier.run(item)
            failed += not outcome.ok
            print(f"{outcome.status:9} {item}" + (f"  ({outcome.note})" if outcome.note else ""))
        print(f"replicate {rule.name} (dry run): {len(items)} items, {failed} failed")
        return 0 if failed == 0 else 1
    except (Refused, ItemFailed, Transient) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        await sides.close()
        await registry.close()
