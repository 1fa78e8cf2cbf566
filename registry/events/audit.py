"""The audit trail: who pushed, deleted, mounted or was refused what, from which address.

Each event is one record of the ``moorage.audit`` logger (in the configured log format, fields as for
every structured event) and, with ``log.audit.path``, one JSON line appended to that file whatever the
log format.  Changes come from the write path's events (``registry/writes/events.py``), whoever made
them; the mirror filling its cache is not audited (no client changed anything), and pulls are not
audited (notifications report them).  A refusal is a 403, a 401 to a request that carried credentials
(a wrong password, an invalid token, a token without the scope), or a token request the token server
turned down; a 401 to a request without credentials is the ordinary challenge every client meets
first and is not recorded.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading

from auth.basic import basic_credentials
from registry.events import metrics
from registry.events.observe import Exchange
from registry.writes.actor import MIRROR
from registry.writes.events import CHANGES, RepositoryEvent
from storage.database.records import ChangeRecord

log = logging.getLogger("moorage.audit")


class AuditTrail:
    kinds = CHANGES

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    async def on_event(self, event: RepositoryEvent) -> None:
        """A change made through the write path."""
        actor = event.actor
        if actor.kind == MIRROR:
            return
        found = {"kind": event.target, "repository": event.repository, "digest": event.digest and str(event.digest),
                 "tag": event.tags[0] if event.tags else None, "from_repository": event.from_repository}
        fields: dict[str, object] = {k: v for k, v in found.items() if v is not None}
        if len(event.tags) > 1:
            fields["tags"] = list(event.tags)
        request = actor.request
        if request is not None:
            http = {"request_id": request.id, "method": request.method, "route": request.route,
                    "status": request.status}
        else:
            http = {"actor": actor.kind}
        self.write(event.action, actor.name, actor.address, http, fields)

    async def heard(self, exchange: Exchange) -> None:
        """Every answered request: the refusals among them."""
        if exchange.status in (401, 403):
            self.refused(exchange)

    def refused(self, exchange: Exchange) -> None:
        authorization = exchange.header("authorization")
        token_request = exchange.scope.get("moorage.route") is None and exchange.status == 401
        if exchange.status == 401 and not authorization and not token_request:
            return
        wanted = exchange.scope.get("moorage.wanted") or []
        fields = {"scopes": [a.scope for a in wanted]} if wanted else {"path": exchange.path}
        user = exchange.user
        if user is None and authorization:
            credentials = basic_credentials(authorization)  # the name the caller claimed, never the password
            user = credentials[0] if credentials else None
        http = {"request_id": exchange.request_id, "method": exchange.method, "route": exchange.route,
                "status": exchange.status}
        self.write("refused", user, exchange.remote_addr, http, fields, exchange.path)

    def changed(self, change: ChangeRecord) -> None:
        """A recorded change of who may do what (access tokens: created, revoked, used from a new address)."""
        fields = {k: v for k, v in {"target": change.target, "namespace": change.namespace,
                                    "before": change.before, "after": change.after}.items() if v is not None}
        self.write(change.action, change.actor, change.address or "", {"actor": "management"}, fields, change.target)

    def write(self, action: str, user: str | None, address: str, http: dict[str, object],
              fields: dict[str, object], path: str = "") -> None:
        event = {"audit": action, "user": user, "remote_addr": address, **http, **fields}
        metrics.audit_events.labels(action).inc()
        log.info("%s %s by %s from %s", action, fields.get("repository") or fields.get("scopes") or path,
                 user or "anonymous", address, extra={"fields": event})
        if self.path:
            line = json.dumps({"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                               **event}, default=str)
            with self._lock, open(self.path, "a") as sink:
                sink.write(line + "\n")
