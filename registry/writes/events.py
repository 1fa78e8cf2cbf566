"""Domain events: one per change the write path makes (and one per pull the read handlers serve), fanned
out to whoever subscribed (notifications, the audit trail, metrics, and what other parts add).

An event made while answering an HTTP request is held until the answer is sent (``RequestInfo.held``),
so a subscriber's work (a queued notification is a storage write) never delays the client, and the
request's route and status are known to the subscribers; other events (replication, the mirror's
background downloads) go out at once.  A subscriber that fails is logged and the others still hear of
the event: the change itself is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from registry.writes.actor import Actor, RequestInfo
from storage.digests import Digest

log = logging.getLogger("moorage.events")


class EventKind(StrEnum):
    """What happened; a write about to happen is described by the event it will make (``policy.Write``)."""

    MANIFEST_PUSHED = "manifest pushed"  # ``tags``: the tags the push set
    TAG_SET = "tag set"  # an existing manifest tagged (or a tag moved to it)
    TAG_DELETED = "tag deleted"
    MANIFEST_DELETED = "manifest deleted"  # ``tags``: the tags that pointed at it and went with it
    BLOB_PUSHED = "blob pushed"  # (a write about to start an upload has no digest yet)
    BLOB_MOUNTED = "blob mounted"  # ``from_repository``: where it was linked from (None: any repository)
    BLOB_DELETED = "blob deleted"
    MANIFEST_PULLED = "manifest pulled"  # reads: no change, but notifications report them
    BLOB_PULLED = "blob pulled"


# each event in Distribution's vocabulary (notifications, the audit trail): (action, what it acts on)
DISTRIBUTION: dict[EventKind, tuple[str, str]] = {
    EventKind.MANIFEST_PUSHED: ("push", "manifest"),
    EventKind.TAG_SET: ("push", "tag"),
    EventKind.TAG_DELETED: ("delete", "tag"),
    EventKind.MANIFEST_DELETED: ("delete", "manifest"),
    EventKind.BLOB_PUSHED: ("push", "blob"),
    EventKind.BLOB_MOUNTED: ("mount", "blob"),
    EventKind.BLOB_DELETED: ("delete", "blob"),
    EventKind.MANIFEST_PULLED: ("pull", "manifest"),
    EventKind.BLOB_PULLED: ("pull", "blob"),
}
PULLS = frozenset({EventKind.MANIFEST_PULLED, EventKind.BLOB_PULLED})
CHANGES = frozenset(EventKind) - PULLS
DELETES = frozenset(kind for kind, (action, _) in DISTRIBUTION.items() if action == "delete")


@dataclass(frozen=True, slots=True)
class RepositoryEvent:
    kind: EventKind
    repository: str
    actor: Actor
    digest: Digest | None = None
    tags: tuple[str, ...] = ()
    media_type: str | None = None
    size: int | None = None
    from_repository: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def request(self) -> RequestInfo | None:
        return self.actor.request

    @property
    def action(self) -> str:
        """Distribution's action: push, delete, mount or pull."""
        return DISTRIBUTION[self.kind][0]

    @property
    def target(self) -> str:
        """What the action is on: manifest, tag or blob."""
        return DISTRIBUTION[self.kind][1]


class Subscriber(Protocol):
    """Hears of events of the kinds it names."""

    kinds: frozenset[EventKind]

    async def on_event(self, event: RepositoryEvent) -> None: ...


class EventBus:
    """Where the write path (and the read handlers, for pulls) publish; subscribers plug in here."""

    def __init__(self) -> None:
        self._by_kind: dict[EventKind, list[Subscriber]] = {kind: [] for kind in EventKind}

    def subscribe(self, subscriber: Subscriber) -> None:
        for kind in subscriber.kinds:
            self._by_kind[kind].append(subscriber)

    def wanted(self, kind: EventKind) -> bool:
        """Whether anyone listens for ``kind`` (a pull event need not even be made otherwise)."""
        return bool(self._by_kind[kind])

    async def publish(self, event: RepositoryEvent) -> None:
        if not self._by_kind[event.kind]:
            return
        request = event.actor.request
        if request is not None and request.held is not None:
            request.held.append(event)
            return
        await self._deliver(event)

    async def answered(self, request: RequestInfo, route: str, status: int) -> None:
        """The request's answer went out: its held events go to the subscribers, in the order made."""
        request.route, request.status = route, status
        held, request.held = request.held, None
        for event in held or ():
            await self._deliver(event)

    async def _deliver(self, event: RepositoryEvent) -> None:
        for subscriber in self._by_kind[event.kind]:
            try:
                await subscriber.on_event(event)
            except Exception:
                log.exception("%s failed on %s in %s", type(subscriber).__name__, event.kind, event.repository)
