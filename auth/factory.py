"""Builds the access controller named by the ``auth`` config section."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from auth.base import AccessController, AllowAll


def build_access_controller(auth: dict[str, Any]) -> AccessController:
    """``auth`` is the raw config section; raise ValueError naming the key when it is wrong."""
    if not auth:
        return AllowAll()
    raise ValueError(f"auth.{next(iter(auth))}: not supported yet")


def token_server_routes(auth: dict[str, Any]) -> list[BaseRoute]:
    """Routes of the built-in token server when the config enables it."""
    return []
