"""One send per small response under uvicorn, which writes a response's head and body apart.

uvicorn's httptools protocol calls ``transport.write`` for the head (status line and headers), then
again for each piece of the body: two sends for a manifest or ``/v2/`` answer. In profiles of manifest
GETs those two writes were 38 % of the time the event loop held the GIL. ``HeadWithBody`` stands
between one request's cycle and the connection: it holds the head until the body's first piece and
sends both together. Only requests with a body to follow get one (not HEAD), so a head is never left
behind; closing the connection sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

INTERIM = b"HTTP/1.1 1"  # "100 Continue": the client waits for it before sending the body, never held
JOIN_BELOW = 64 * 1024  # smaller bodies are copied behind the head; larger ones go out gathered


class HeadWithBody:
    """The transport as one request's response sees it (see the module's docstring)."""

    __slots__ = ("_transport", "_head", "_started")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False  # the head has come: every later write is body

    def write(self, data: bytes) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if len(data) < JOIN_BELOW:
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))
        elif self._started or data.startswith(INTERIM):
            self._transport.write(data)
        else:
            self._started = True
            self._head = data

    def close(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
