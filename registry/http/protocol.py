"""uvicorn's HTTP/1 protocol (httptools) with the connection-level limits and answers of a registry.

uvicorn buffers a header of any size (one of 64 MiB was accepted), any number of them, keeps a
connection open forever while its head or its body arrives slowly or not at all, and answers what it
cannot parse in plain text. This protocol is uvicorn's own, with these changes where the bytes arrive:

* the head (request line and headers) may hold ``maxheadersize`` bytes and ``maxheaders`` fields:
  beyond, 431 and close;
* a connection must deliver a complete head within ``headertimeout`` seconds of its first byte of a
  request (or of connecting): otherwise it is closed;
* a request body must keep arriving: ``bodytimeout`` seconds without a byte while the app waits for it
  close the connection (the app sees a disconnect; an upload keeps what arrived and can resume). Time
  the app itself takes does not count: not while reading is paused because the app is behind, nor
  before it asks for a body announced with ``Expect: 100-continue``;
* a response that starts before a ``100-continue`` body was asked for closes the connection: the client
  was never invited to send that body, and the next bytes it sends would be taken for it;
* its own refusals (a request it cannot parse, a head over the limits) are in the registry's JSON error
  format;
* a body piece reaches the app as the bytes object the parser made: uvicorn appends every piece to a
  ``bytearray`` and copies that into new bytes for the app, two copies of every byte pushed (~8 % of a
  push's CPU once the page cache's copy was gone, ``storage.driver.direct``). Pieces that arrive while the
  app is busy are joined (one copy). ``receive`` is uvicorn's, with that change only.

It also sends a response's head and its body's first piece together (``registry.http.coalesce``).

granian's HTTP/1 settings bound the head's buffer and read time, and the app bounds the wait for body
pieces (``registry.http.app``). The limits travel on uvicorn's Config object, so forked workers have them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from registry.http.coalesce import HeadWithBody


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int
    max_fields: int
    head_timeout: float
    body_timeout: float


def json_refusal(status: str, message: str) -> bytes:
    """A complete response that closes the connection, with the spec's error body."""
    body = json.dumps({"errors": [{"code": "UNSUPPORTED", "message": message}]}).encode()
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status.encode(), len(body), body))


class RegistryHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``config.moorage_limits`` (see the module)."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, server_state, app_state, _loop)
        self._limits: Limits = config.moorage_limits
        self._head_bytes = 0
        self._head_fields = 0
        self._reading_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_body = False  # between a request's head and the end of its body
        self._last_body_data = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_timer()
        else:
            self._last_body_data = self.loop.time()
        super().data_received(data)
        # checked after parsing: a chunk that completes the head may carry the body's first bytes
        if self._reading_head and self._head_bytes > self._limits.max_head_bytes and not self.transport.is_closing():
            self._refuse()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, in the registry's error format."""
        self.logger.warning("%s", msg)
        self.transport.write(json_refusal("400 Bad Request", "invalid HTTP request"))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_fields = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self._limits.max_fields:
            self._refuse()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return  # refused while parsing this head: no request
        self._reading_head = False
        self._stop_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return
        if self.scope["method"] != "HEAD":
            cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]
        if cycle.waiting_for_100_continue:
            cycle.send = closing_unless_continued(cycle)  # type: ignore[method-assign]
        cycle.pieces = []  # type: ignore[attr-defined]
        cycle.receive = piece_receiver(cycle)  # type: ignore[method-assign]
        if self._has_body():
            self._in_body = True
            self._last_body_data = self.loop.time()
            self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_idle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        pieces: list[bytes] = cycle.pieces  # type: ignore[attr-defined]
        pieces.append(body)
        if sum(map(len, pieces)) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._stop_body_timer()
        self._reading_head = True  # what follows is the next request's head
        self._head_bytes = 0

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _body_idle(self) -> None:
        """The body timer: close when no byte came for ``body_timeout`` seconds while the app waited."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        app_waits = (cycle is not None and not cycle.waiting_for_100_continue and not cycle.response_complete
                     and not self.flow.read_paused)
        if not app_waits:
            self._last_body_data = now  # the app is behind or has not asked yet: not the client's silence
        idle = now - self._last_body_data
        if idle < self._limits.body_timeout:
            self._body_timer = self.loop.call_later(self._limits.body_timeout - idle, self._body_idle)
            return
        self.logger.warning("request body: nothing received for %gs: connection closed", self._limits.body_timeout)
        self.transport.close()

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _refuse(self) -> None:
        self._stop_head_timer()
        self.logger.warning("request head over the limits (%d bytes or %d fields): refused",
                            self._limits.max_head_bytes, self._limits.max_fields)
        self.transport.write(json_refusal("431 Request Header Fields Too Large", "request header fields too large"))
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._limits.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            self.transport.close()


def closing_unless_continued(cycle: RequestResponseCycle) -> Any:
    """``cycle.send`` for a request announcing its body with ``Expect: 100-continue``: a response that starts
    before the app asked for the body (an error, a refused login) ends the connection."""
    send = cycle.send

    async def closing_send(message: Any) -> None:
        if message["type"] == "http.response.start" and cycle.waiting_for_100_continue:
            cycle.keep_alive = False
        await send(message)

    return closing_send


def piece_receiver(cycle: RequestResponseCycle) -> Any:
    """``cycle.receive``: uvicorn's, handing the app the pieces ``on_body`` kept instead of a copy of them."""

    async def receive() -> Any:
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return {"type": "http.disconnect"}
        pieces: list[bytes] = cycle.pieces  # type: ignore[attr-defined]
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        return {"type": "http.request", "body": body, "more_body": cycle.more_body}

    return receive

