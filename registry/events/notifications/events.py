"""Distribution's notification events (``application/vnd.docker.distribution.events.v1+json``).

An event is a JSON object: ``id`` (a UUID; a receiver de-duplicates on it, since delivery is
at-least-once), ``timestamp`` (RFC 3339), ``action`` (push, pull, delete, mount), ``target`` (mediaType,
digest, size, length, repository, url, tag, fromRepository as they apply), ``request`` (id, addr, host,
method, useragent), ``actor`` (name, when the caller is known) and ``source`` (addr, instanceID).
"""

from __future__ import annotations

import datetime
import socket
import uuid
from typing import Any

from registry.config import Config
from registry.events.activity import Activity
from registry.events.observe import Exchange

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


class EventFactory:
    def __init__(self, config: Config) -> None:
        self.http = config.http
        port = config.http.addr.rpartition(":")[2]
        self.source = {"addr": f"{socket.gethostname()}:{port}", "instanceID": str(uuid.uuid4())}

    def event(self, exchange: Exchange, done: Activity) -> dict[str, Any]:
        host = exchange.header("host") or ""
        target: dict[str, Any] = {}
        if done.media_type:
            target["mediaType"] = done.media_type
        if done.digest:
            target["digest"] = done.digest
        if done.size is not None:
            target["size"] = done.size
            target["length"] = done.size
        target["repository"] = done.repository
        if done.from_repository:
            target["fromRepository"] = done.from_repository
        if done.action != "delete" and done.digest:
            kind = "manifests" if done.kind == "manifest" else "blobs"
            target["url"] = f"{self.base(exchange, host)}{self.http.prefix}v2/{done.repository}/{kind}/{done.digest}"
        if done.tag:
            target["tag"] = done.tag
        actor = {"name": exchange.user} if exchange.user else {}
        return {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "action": done.action,
            "target": target,
            "request": {"id": exchange.request_id, "addr": exchange.remote_addr, "host": host,
                        "method": exchange.method, "useragent": exchange.header("user-agent") or ""},
            "actor": actor,
            "source": self.source,
        }

    def base(self, exchange: Exchange, host: str) -> str:
        if self.http.host:
            return self.http.host
        return f"{exchange.scope.get('scheme', 'http')}://{host}"
