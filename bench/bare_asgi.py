"""A bare ASGI app (no registry logic, no framework) for ``python -m bench limits``: the server's ceiling.

* ``GET /v2/``: ``{}`` as the registry answers it (what a request costs the ASGI server itself);
* ``PUT /push``: reads the body and throws it away (receiving, without hashing or writing);
* ``GET /pull``: sends the file named by ``BARE_ASGI_FILE``, with ``http.response.pathsend`` where the server
  offers it, else in 1 MiB ``os.pread`` blocks read on the loop (the cheapest a pull can be in Python).
"""

from __future__ import annotations

import os
from typing import Any

V2_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2"),
              (b"docker-distribution-api-version", b"registry/2.0")]
BLOCK = 1 << 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path == "/push":
        received = 0
        more = True
        while more:
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/pull":
        name = os.environ["BARE_ASGI_FILE"]
        size = os.stat(name).st_size
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": name})
            return
        fd = os.open(name, os.O_RDONLY)
        try:
            for offset in range(0, size, BLOCK):
                chunk = os.pread(fd, BLOCK, offset)
                await send({"type": "http.response.body", "body": chunk, "more_body": offset + BLOCK < size})
        finally:
            os.close(fd)
    else:
        await send({"type": "http.response.start", "status": 200, "headers": V2_HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})
