"""What the app's dispatch puts into a request for its handler: the registry, the named repository, and
who acts (the write path's ``Actor``, made from the access controller's grant)."""

from __future__ import annotations

from starlette.requests import Request

from registry.events.observe import request_info
from registry.instance import Registry
from registry.repository import Repository
from registry.writes.actor import Actor, from_grant
from registry.writes.events import EventKind, RepositoryEvent
from storage.digests import Digest


def registry_of(request: Request) -> Registry:
    return request.scope["moorage.registry"]


def repository_of(request: Request) -> Repository:
    """The repository the request's path names, as the dispatch resolved it (mirrored or local)."""
    return request.scope["moorage.repository"]


def actor_of(request: Request) -> Actor:
    """Who makes this request's changes: the granted caller, with the request's id and address."""
    return from_grant(request.scope["moorage.grant"], request_info(request.scope))


async def publish_pull(request: Request, kind: EventKind, digest: Digest, tags: tuple[str, ...],
                       media_type: str | None, size: int | None) -> None:
    """A pull served (no change, but notifications report pulls): an event, when anyone listens."""
    registry = registry_of(request)
    if registry.events.wanted(kind):
        event = RepositoryEvent(kind, repository_of(request).name, actor_of(request), digest, tags, media_type, size)
        await registry.events.publish(event)
