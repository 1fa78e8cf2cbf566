"""What the ASGI servers leave to the app about a request's framing: its HTTP version and Host header,
a refused request's body, and (under granian) a body that stops arriving.

uvicorn and granian pass on an HTTP/1.1 request without ``Host`` (RFC 9112 says 400), and uvicorn an
``HTTP/2.0`` request line, which on an HTTP/1 connection is no HTTP/2. A refused request's body is read
only as far as Go's net/http reads one (256 KiB), so that a small one still gets a clean answer on a
connection that stays usable; past that the connection closes, and a body announced with
``Expect: 100-continue`` is not asked for at all ("100 Continue" is sent when the app first reads). uvicorn's
protocol (``registry.http.protocol``) bounds the wait for body pieces; under granian ``IdleBody`` does.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive

from registry.errors import RegistryError

log = logging.getLogger("moorage")
DRAIN_LIMIT = 256 * 1024  # Go's net/http reads this much of an unread body before closing instead
HTTP_VERSIONS = frozenset({"1.0", "2", "3"})  # and 1.1 with its Host header


def malformed(scope: dict) -> RegistryError | None:
    """The error for a request whose version or Host the registry does not accept, else None."""
    version = scope["http_version"]
    if version == "1.1":
        for name, value in scope["headers"]:
            if name == b"host":
                if value:
                    return None
                break  # granian passes a missing Host on as an empty one
        return RegistryError("UNSUPPORTED", "an HTTP/1.1 request needs a Host header", status=400)
    if version in HTTP_VERSIONS:
        return None
    return RegistryError("UNSUPPORTED", f"HTTP/{version} is not supported", status=505,
                         headers={"Connection": "close"})


async def refuse_body(request: Request, response: Response) -> None:
    """Before ``response`` refuses ``request``: read what remains of its body up to ``DRAIN_LIMIT``, or
    make the response close the connection (a larger body, or one the client waits to be asked for)."""
    headers = request.headers
    if "content-length" not in headers and "transfer-encoding" not in headers:
        return
    if headers.get("expect", "").lower() == "100-continue":
        response.headers["Connection"] = "close"
        return
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > DRAIN_LIMIT:
                response.headers["Connection"] = "close"
                return
    except (ClientDisconnect, RuntimeError):  # gone, or the handler had read it already
        pass


class IdleBody:
    """``receive`` of one request under granian: a body piece must come within ``timeout`` seconds of the
    app asking for it, or the request ends as if the client had gone (``http.disconnect``)."""

    __slots__ = ("_receive", "_timeout", "_done")

    def __init__(self, receive: Receive, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout
        self._done = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._receive()
        except TimeoutError:
            log.warning("request body: nothing received for %gs: request ended", self._timeout)
            self._done = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message
