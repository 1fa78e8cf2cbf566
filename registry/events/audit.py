"""The audit trail: who pushed, deleted, mounted or was refused what, from which address.

Each event is one record of the ``moorage.audit`` logger (in the configured log format, fields as for
every structured event) and, with ``log.audit.path``, one JSON line appended to that file whatever the
log format. Pulls are not audited (notifications report them). A refusal is a 403, a 401 to a request
that carried credentials (a wrong password, an invalid token, a token without the scope), or a token
request the token server turned down; a 401 to a request without credentials is the ordinary
challenge every client meets first and is not recorded.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading

from auth.basic import basic_credentials
from registry.events import metrics
from registry.events.activity import Activity, activity
from registry.events.observe import Exchange

log = logging.getLogger("moorage.audit")
AUDITED = frozenset({"push", "delete", "mount"})


class AuditTrail:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    async def heard(self, exchange: Exchange) -> None:
        if exchange.status in (401, 403):
            self.refused(exchange)
            return
        if exchange.method in ("GET", "HEAD"):
            return
        done = activity(exchange)
        if done is not None and done.action in AUDITED:
            self.write(exchange, done.action, target(done))

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
        self.write(exchange, "refused", fields, user)

    def write(self, exchange: Exchange, action: str, fields: dict[str, object], user: str | None = None) -> None:
        event = {
            "audit": action, "user": user or exchange.user, "remote_addr": exchange.remote_addr,
            "request_id": exchange.request_id, "method": exchange.method, "route": exchange.route,
            "status": exchange.status, **fields,
        }
        metrics.audit_events.labels(action).inc()
        log.info("%s %s by %s from %s", action, fields.get("repository") or fields.get("scopes") or
                 exchange.path, event["user"] or "anonymous", exchange.remote_addr, extra={"fields": event})
        if self.path:
            line = json.dumps({"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                               **event}, default=str)
            with self._lock, open(self.path, "a") as sink:
                sink.write(line + "\n")


def target(done: Activity) -> dict[str, object]:
    found = {"kind": done.kind, "repository": done.repository, "digest": done.digest, "tag": done.tag,
             "from_repository": done.from_repository}
    return {k: v for k, v in found.items() if v is not None}
