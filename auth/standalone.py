"""``moorage token-server CONFIG``: the built-in token server without the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette

from auth import settings
from auth.factory import TOKENSERVER_KEYS, token_server_routes

DEFAULT_ADDR = "127.0.0.1:5001"


def token_server_app(auth: Mapping[str, Any]) -> Starlette:
    routes = token_server_routes(auth)
    if not routes:
        raise ValueError("auth.tokenserver: not configured")
    return Starlette(routes=routes)


def serve(auth: Mapping[str, Any], addr: str | None = None, log_level: str = "info") -> None:
    app = token_server_app(auth)
    server = settings.mapping(auth, "auth.tokenserver", TOKENSERVER_KEYS)
    addr = addr or settings.text(server.get("addr", DEFAULT_ADDR), "auth.tokenserver.addr")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"auth.tokenserver.addr: expected HOST:PORT, got {addr!r}")
    tls = settings.mapping(server, "auth.tokenserver.tls", ("certificate", "key"))
    certfile = keyfile = None
    if tls:
        certfile = str(settings.existing_file(tls.get("certificate"), "auth.tokenserver.tls.certificate"))
        keyfile = str(settings.existing_file(tls.get("key"), "auth.tokenserver.tls.key"))
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port), log_level=log_level,
                ssl_certfile=certfile, ssl_keyfile=keyfile)
