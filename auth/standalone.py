"""``moorage token-server CONFIG``: the built-in token server without the registry.  With ``auth.database``
it reads the registry's database (``policy``), following its change feed as the registry does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette

from auth.factory import token_server_routes
from auth.policy import PolicySnapshot
from auth.settings import AuthSettings
from configkit import Addr, ConfigError, convert, existing_file
from storage.database import Cached


def token_server_app(auth: AuthSettings | Mapping[str, Any], policy: Cached[PolicySnapshot] | None = None
                     ) -> Starlette:
    routes = token_server_routes(auth, policy=policy)
    if not routes:
        raise ConfigError("auth.tokenserver: not configured")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if policy is not None:
            policy.db.feed.start()
        yield
        if policy is not None:
            await policy.db.close()

    return Starlette(routes=routes, lifespan=lifespan)


def serve(auth: AuthSettings | Mapping[str, Any], addr: str | None = None, log_level: str = "info",
          policy: Cached[PolicySnapshot] | None = None) -> None:
    """``addr`` (``--addr``) overrides ``auth.tokenserver.addr``."""
    settings = AuthSettings.parse(auth)
    app = token_server_app(settings, policy)
    assert settings.tokenserver is not None
    host, _, port = (convert(Addr, addr, "--addr") if addr else settings.tokenserver.addr).rpartition(":")
    tls = settings.tokenserver.tls
    certfile = keyfile = None
    if tls:
        certfile = str(existing_file(tls.certificate, "auth.tokenserver.tls.certificate"))
        keyfile = str(existing_file(tls.key, "auth.tokenserver.tls.key"))
    uvicorn.run(app, host=host.strip("[]") or "0.0.0.0", port=int(port), log_level=log_level,
                ssl_certfile=certfile, ssl_keyfile=keyfile)
