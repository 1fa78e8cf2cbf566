"""When a scheduled rule runs next: ``interval`` after its last run, or the next time its ``cron``
expression names after the last run (5 fields, UTC, parsed by cronsim).  The time of the last run is
kept in storage, so every replica agrees and a restart neither skips nor repeats a run."""

from __future__ import annotations

import datetime

from cronsim import CronSim

from registry.replication.rules import Rule


def next_run(rule: Rule, last: float | None, now: float) -> float:
    """The time of the next run; a rule never run before runs now (interval) or at its next cron time."""
    if rule.interval is not None:
        return now if last is None else last + rule.interval
    assert rule.cron is not None
    start = datetime.datetime.fromtimestamp(last if last is not None else now, datetime.UTC)
    return next(CronSim(rule.cron, start.replace(microsecond=0))).timestamp()
