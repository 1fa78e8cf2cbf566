"""``moorage token-server CONFIG``: the built-in token server without the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette

from auth.factory import token_server_routes
from auth.settings import AuthSettings
from configkit import Addr, ConfigError, convert, existing_file


def token_server_app(auth: AuthSettings | Mapping[str, Any]) -> Starlette:
    routes = token_server_routes(auth)
    if not routes:
        raise ConfigError("auth.tokenserver: not configured")
    return Starlette(routes=routes)


def serve(auth: AuthSettings | Mapping[str, Any], addr: str | None = None, log_level: str = "info") -> None:
    """``addr`` (``--addr``) overrides ``auth.tokenserver.addr``."""
    settings = AuthSettings.parse(auth)
    app = token_server_app(settings)
    assert settings.tokenserver is not None
    host, _, port = (convert(Addr, addr, "--addr") if addr else settings.tokenserver.addr).rpartition(":")
    tls = settings.tokenserver.tls
    certfile = keyfile = None
    if tls:
        certfile = str(existing_file(tls.certificate, "auth.tokenserver.tls.certificate"))
        keyfile = str(existing_file(tls.key, "auth.tokenserver.tls.key"))
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port), log_level=log_level,
                ssl_certfile=certfile, ssl_keyfile=keyfile)
