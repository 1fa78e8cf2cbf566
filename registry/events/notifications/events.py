"""Distribution's notification events (``application/vnd.docker.distribution.events.v1+json``), made from
the write path's domain events and the read handlers' pulls.

An event is a JSON object: ``id`` (a UUID; a receiver de-duplicates on it, since delivery is
at-least-once), ``timestamp`` (RFC 3339), ``action`` (push, pull, delete, mount), ``target`` (mediaType,
digest, size, length, repository, url, tag, fromRepository as they apply), ``request`` (id, addr, host,
method, useragent), ``actor`` (name, when the caller is known) and ``source`` (addr, instanceID).  A
manifest pushed with several tags (OCI's ``?tag=``) makes one push event per tag; a deleted manifest one
delete event, without the tags that went with it (as Distribution's).
"""

from __future__ import annotations

import datetime
import socket
import uuid
from typing import Any

from registry.config import Config
from registry.writes.events import EventKind, RepositoryEvent

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
BLOB_MEDIA_TYPE = "application/octet-stream"  # what Distribution's blob events carry


def media_type(event: RepositoryEvent) -> str | None:
    """The target's ``mediaType``: none on deletes, Distribution's constant on blobs."""
    if event.action == "delete":
        return None
    return (event.media_type or BLOB_MEDIA_TYPE) if event.target == "blob" else event.media_type


class EventFactory:
    def __init__(self, config: Config) -> None:
        self.http = config.http
        port = config.http.addr.rpartition(":")[2]
        self.source = {"addr": f"{socket.gethostname()}:{port}", "instanceID": str(uuid.uuid4())}

    def events(self, event: RepositoryEvent) -> list[dict[str, Any]]:
        """The notification events of one domain event (one per tag a push set)."""
        if event.tags and event.kind is not EventKind.MANIFEST_DELETED:
            return [self.event(event, tag) for tag in event.tags]
        return [self.event(event, None)]

    def event(self, event: RepositoryEvent, tag: str | None) -> dict[str, Any]:
        action = event.action
        request = event.request
        target: dict[str, Any] = {}
        kind = media_type(event)
        if kind:
            target["mediaType"] = kind
        if event.digest:
            target["digest"] = str(event.digest)
        if event.size is not None and action != "delete":
            target["size"] = target["length"] = event.size
        target["repository"] = event.repository
        if event.from_repository:
            target["fromRepository"] = event.from_repository
        base = self.http.host or (f"{request.scheme}://{request.host}" if request is not None else "")
        if action != "delete" and event.digest and base:
            segment = "blobs" if event.target == "blob" else "manifests"
            target["url"] = f"{base}{self.http.prefix}v2/{event.repository}/{segment}/{event.digest}"
        if tag:
            target["tag"] = tag
        actor = event.actor
        return {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.datetime.fromtimestamp(event.at, datetime.UTC).isoformat().replace("+00:00", "Z"),
            "action": action,
            "target": target,
            "request": {"id": request.id if request else "", "addr": actor.address,
                        "host": request.host if request else "", "method": request.method if request else "",
                        "useragent": request.user_agent if request else ""},
            "actor": {"name": actor.name} if actor.name else {},
            "source": self.source,
        }
