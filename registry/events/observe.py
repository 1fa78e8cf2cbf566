"""Around every HTTP request: its request id, its metrics, its one log event; its listeners (the audit
trail's refusals) hear of it, and the domain events it made go out once it is answered.

The request id is the ``X-Request-Id`` a trusted proxy (``http.trustedproxies``) sent, else a new one; it
is returned in the response's ``X-Request-Id`` and appears in the log event and, through the actor's
``RequestInfo`` (``Exchange.request_info``), in audit events and the notifications' ``request.id``.  The
route is the endpoint's template (``registry.http.routes``), so metrics labels stay bounded whatever the
repository names.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.routing import BaseRoute, Match
from starlette.types import Message, Receive, Scope, Send

from registry.config import Config
from registry.events import metrics
from registry.writes.actor import RequestInfo
from registry.writes.events import EventBus

access_log = logging.getLogger("moorage.access")
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID = 128
KEPT_HEADERS = frozenset({b"docker-content-digest", b"content-type", b"content-length", b"location"})
NO_ANSWER = 499  # the client went away before an answer (nginx's convention)
UNMATCHED = "unmatched"
# query parameters the registry reads that carry no secret: logged with their values; any other value (a
# ``?password=``, an OAuth ``code``) is logged as REDACTED. ``ns`` is containerd's: which upstream a mirror served
LOGGED_PARAMETERS = frozenset({
    "n", "last", "digest", "mount", "from", "ns", "artifactType",  # /v2
    "service", "scope", "account", "client_id", "offline_token",  # the token server
    "q", "page", "sort", "order", "tag", "next",  # the web UI and /v1/search
})
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(slots=True)
class Exchange:
    """One request and its answer, as the log, the audit trail and notifications see it."""

    request_id: str
    method: str
    path: str
    remote_addr: str
    scope: Scope
    route: str = UNMATCHED
    status: int = NO_ANSWER
    bytes_in: int = 0
    bytes_out: int = 0
    duration: float = 0.0
    response_headers: dict[str, str] = field(default_factory=dict)
    info: RequestInfo | None = None  # made when a handler needs an actor

    def request_info(self) -> RequestInfo:
        """The request as the write path's events report it (made once, on first need)."""
        if self.info is None:
            self.info = RequestInfo(self.request_id, self.remote_addr, self.method, self.header("host") or "",
                                    self.scope.get("scheme", "http"), self.header("user-agent") or "")
        return self.info

    @property
    def repository(self) -> str | None:
        params = self.scope.get("path_params")
        return params.get("name") if params else None

    @property
    def user(self) -> str | None:
        grant = self.scope.get("moorage.grant")
        return grant.subject if grant is not None else None

    def header(self, name: str) -> str | None:
        """A request header (lowercase name)."""
        wanted = name.encode()
        for key, value in self.scope["headers"]:
            if key == wanted:
                return value.decode("latin-1")
        return None


def request_info(scope: Scope) -> RequestInfo | None:
    """The observed request a handler runs in, as the write path's actors carry it."""
    exchange = scope.get("moorage.exchange")
    return exchange.request_info() if exchange is not None else None


@dataclass(frozen=True, slots=True)
class HTTPSeries:
    """The metric children of one (route, method, status)."""

    requests: Any
    duration: Any
    bytes_in: Any
    bytes_out: Any


class Listener(Protocol):
    """Something that hears of every answered request (the audit trail's refusals)."""

    async def heard(self, exchange: Exchange) -> None: ...


class Observer:
    def __init__(self, config: Config, other_routes: list[BaseRoute], listeners: list[Listener],
                 events: EventBus) -> None:
        self.metrics = config.metrics_enabled
        self.access_log = config.accesslog
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in config.http.trustedproxies]
        self.other_routes = other_routes
        self.listeners = listeners
        self.events = events
        self._series: dict[tuple[str, str, int], HTTPSeries] = {}  # bounded: routes x methods x statuses

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: App) -> None:
        started = time.perf_counter()
        root_path = scope.get("root_path", "")  # a Mount that handles the request changes it in ``scope``
        peer = scope.get("client")
        peer_host = peer[0] if peer else ""
        from_proxy = self._trusted(peer_host)
        exchange = Exchange(self._request_id(scope, from_proxy), scope["method"], scope["path"],
                            self._remote(scope, peer_host, from_proxy), scope)
        scope["moorage.request_id"] = exchange.request_id
        scope["moorage.exchange"] = exchange
        id_header = (REQUEST_ID_HEADER, exchange.request_id.encode())

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.bytes_in += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                headers = message.get("headers", [])
                for key, value in headers:
                    if key in KEPT_HEADERS:
                        exchange.response_headers[key.decode()] = value.decode("latin-1")
                message["headers"] = [*headers, id_header]
            elif kind == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            elif kind == "http.response.pathsend":
                exchange.bytes_out += int(exchange.response_headers.get("content-length", 0))
            await send(message)

        upload = scope["method"] in ("POST", "PATCH", "PUT") and "/blobs/uploads" in scope["path"]
        if self.metrics:
            metrics.http_in_flight.inc()
            if upload:
                metrics.uploads_in_flight.inc()
        try:
            await app(scope, counting_receive, observing_send)
        except BaseException:
            if exchange.status == NO_ANSWER:
                exchange.status = 500
            raise
        finally:
            if self.metrics:
                metrics.http_in_flight.dec()
                if upload:
                    metrics.uploads_in_flight.dec()
            exchange.duration = time.perf_counter() - started
            exchange.route = scope.get("moorage.route") or self._other_route({**scope, "root_path": root_path})
            await self._finish(exchange)

    async def _finish(self, exchange: Exchange) -> None:
        if self.metrics:
            self._measure(exchange)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            self._log(exchange)
        for listener in self.listeners:
            try:
                await listener.heard(exchange)
            except Exception:
                logging.getLogger("moorage").exception("%s failed on request %s", type(listener).__name__,
                                                       exchange.request_id)
        if exchange.info is not None:
            await self.events.answered(exchange.info, exchange.route, exchange.status)

    def _measure(self, exchange: Exchange) -> None:
        key = (exchange.route, exchange.method, exchange.status)
        series = self._series.get(key)
        if series is None:  # labels() costs microseconds: resolve each (route, method, status) once
            labels = (exchange.route, exchange.method, str(exchange.status))
            series = self._series[key] = HTTPSeries(
                metrics.http_requests.labels(*labels), metrics.http_duration.labels(*labels[:2]),
                metrics.http_request_bytes.labels(*labels), metrics.http_response_bytes.labels(*labels))
        series.requests.inc()
        series.duration.observe(exchange.duration)
        if exchange.bytes_in:
            series.bytes_in.inc(exchange.bytes_in)
        if exchange.bytes_out:
            series.bytes_out.inc(exchange.bytes_out)

    @staticmethod
    def _log(exchange: Exchange) -> None:
        """The access event, made by hand: ``Logger.info`` would walk the stack for a caller nobody prints."""
        query = exchange.scope.get("query_string", b"")
        target = f"{exchange.path}?{loggable_query(query)}" if query else exchange.path
        record = access_log.makeRecord(
            access_log.name, logging.INFO, __file__, 0, '%s "%s %s HTTP/%s" %d',
            (exchange.remote_addr, exchange.method, target, exchange.scope.get("http_version", "1.1"),
             exchange.status), None,
            extra={"fields": {
                "request_id": exchange.request_id, "method": exchange.method, "route": exchange.route,
                "repository": exchange.repository, "user": exchange.user, "status": exchange.status,
                "bytes_in": exchange.bytes_in, "bytes": exchange.bytes_out,
                "duration": round(exchange.duration, 6), "remote_addr": exchange.remote_addr,
                "user_agent": exchange.header("user-agent"),
            }},
        )
        access_log.handle(record)

    def _trusted(self, host: str) -> bool:
        if not self.trusted or not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    @staticmethod
    def _request_id(scope: Scope, from_proxy: bool) -> str:
        if from_proxy:
            for key, value in scope["headers"]:
                if key == REQUEST_ID_HEADER:
                    text = value.decode("latin-1").strip()
                    if 0 < len(text) <= MAX_REQUEST_ID and text.isprintable() and text.isascii():
                        return text
        # a random UUID without a getrandom syscall per request: ids need uniqueness, not secrecy (the
        # generator is seeded from the OS at start, and again in each forked process)
        return str(uuid.UUID(int=random.getrandbits(128), version=4))

    @staticmethod
    def _remote(scope: Scope, peer_host: str, from_proxy: bool) -> str:
        """The client's address: the first X-Forwarded-For entry when a trusted proxy sent one."""
        if from_proxy:
            for key, value in scope["headers"]:
                if key == b"x-forwarded-for":
                    first = value.decode("latin-1").split(",")[0].strip()
                    if first:
                        return first
        return peer_host

    def _other_route(self, scope: Scope) -> str:
        """The path of the matching non-/v2 route (health, token server, metrics, UI mount)."""
        for route in self.other_routes:
            found, _ = route.matches(scope)
            if found is Match.FULL:
                return str(getattr(route, "path", UNMATCHED)) or UNMATCHED
        return UNMATCHED


def loggable_query(query: bytes) -> str:
    """The query string as sent, with the values of parameters outside ``LOGGED_PARAMETERS`` redacted."""
    parts = []
    for pair in query.decode("latin-1").split("&"):
        name, sep, _ = pair.partition("=")
        parts.append(pair if name in LOGGED_PARAMETERS or not sep else f"{name}=REDACTED")
    return "&".join(parts)

