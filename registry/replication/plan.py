"""The items of an execution: every tag the rule takes on the source (a manual or scheduled run), with
the destination's tags that are gone from the source when deletes propagate; or the pushes and deletes
of a batch of events (an event run)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable
from typing import Any

from registry.replication.items import COPY, DELETE, Item
from registry.replication.rules import Rule
from registry.replication.side import Side

LISTINGS = 8  # repositories whose tags are listed at once


async def plan_all(rule: Rule, source: Side, destination: Side,
                   listed: dict[str, set[str]] | None = None) -> list[Item]:
    """Every tag of every repository the rule takes, in repository then tag order; the destination's
    tags it lists (to delete those the source lost) go to ``listed``, for the copier."""
    if rule.literal_repositories is not None:
        names = [n for n in rule.literal_repositories if rule.takes_repository(n)]
    else:
        names = [n async for n in source.repositories() if rule.takes_repository(n)]
    slots = asyncio.Semaphore(LISTINGS)

    async def repository(name: str) -> list[Item]:
        async with slots:
            tags = [t for t in await source.tags(name) if rule.takes_tag(t)]
            target = rule.destination(name)
            items = [Item(COPY, name, tag, target) for tag in tags]
            if rule.deletes:
                present = set(tags)
                there = await destination.tags(target)
                if listed is not None:
                    listed[target] = set(there)
                gone = [t for t in there if rule.takes_tag(t) and t not in present]
                items += [Item(DELETE, name, tag, target) for tag in gone]
            return items

    found = await asyncio.gather(*(repository(name) for name in names))
    return [item for items in found for item in items]


def plan_events(rule: Rule, events: Iterable[dict[str, Any]]) -> list[Item]:
    """Items for a batch of Distribution-style events, oldest first: the last event about a tag or
    digest decides (a push after a delete copies, a delete after a push deletes)."""
    items: dict[tuple[str, str], Item] = {}
    for event in events:
        item = event_item(rule, event)
        if item is not None:
            items.pop((item.source, item.reference), None)
            items[(item.source, item.reference)] = item
    return list(items.values())


def event_item(rule: Rule, event: dict[str, Any]) -> Item | None:
    target = event.get("target") or {}
    name, tag, digest = target.get("repository"), target.get("tag"), target.get("digest")
    if not isinstance(name, str) or not rule.takes_repository(name):
        return None
    if tag is not None and not rule.takes_tag(tag):
        return None
    pushed = timestamp(event.get("timestamp"))
    destination = rule.destination(name)
    action = event.get("action")
    if action == "push" and (tag or digest):
        return Item(COPY, name, tag or digest, destination, pushed, referrer_only=tag is None)
    if action == "delete" and rule.deletes and (tag or digest):
        return Item(DELETE, name, tag or digest, destination, pushed)
    return None


def wanted(rule: Rule, action: str, target: str, repository: str, tag: str | None) -> bool:
    """Whether an event (``action`` on a ``target``: manifest, tag or blob) is one an event rule acts on
    (decided before it is queued)."""
    if target not in ("manifest", "tag") or not rule.takes_repository(repository):
        return False
    if tag is not None and not rule.takes_tag(tag):
        return False
    return action == "push" or (action == "delete" and rule.deletes)


def timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
