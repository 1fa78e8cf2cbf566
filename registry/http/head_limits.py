"""Limits on request heads under uvicorn, which has none with its fast parser (httptools).

uvicorn buffers a header of any size (one of 64 MiB was accepted), any number of them, and keeps a
connection open forever while it sends its head slowly or not at all.  This protocol is uvicorn's
own, with three checks added where the bytes arrive:

* the head (request line and headers) may hold ``maxheadersize`` bytes: beyond, 431 and close;
* at most ``maxheaders`` header fields: beyond, 431 and close;
* a connection must deliver a complete head within ``headertimeout`` seconds of its first byte of a
  request (or of connecting): otherwise it is closed.

It also sends a response's head and its body's first piece together (``registry.http.coalesce``).

granian needs none of this: its HTTP/1 settings bound the head's buffer and read time (see
``registry.http.server``).  The limits travel on uvicorn's Config object, so worker processes get them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from registry.http.coalesce import HeadWithBody

HEADER_TOO_LARGE = b"request header fields too large"


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_bytes: int
    max_fields: int
    timeout: float


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits of ``config.moorage_head_limits``."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, server_state, app_state, _loop)
        self._limits: HeadLimits = config.moorage_head_limits
        self._head_bytes = 0
        self._head_fields = 0
        self._reading_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_timer()
        super().data_received(data)
        # checked after parsing: a chunk that completes the head may carry the body's first bytes
        if self._reading_head and self._head_bytes > self._limits.max_bytes and not self.transport.is_closing():
            self._refuse()

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
        if self.cycle is not None and self.cycle.scope is self.scope and self.scope["method"] != "HEAD":
            self.cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # what follows is the next request's head
        self._head_bytes = 0

    def _refuse(self) -> None:
        self._stop_head_timer()
        self.logger.warning("request head over the limits (%d bytes or %d fields): refused",
                            self._limits.max_bytes, self._limits.max_fields)
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(HEADER_TOO_LARGE), HEADER_TOO_LARGE))
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            self.transport.close()
