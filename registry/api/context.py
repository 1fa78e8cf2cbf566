"""What the app's dispatch puts into a request for its handler: the registry and the named repository."""

from __future__ import annotations

from starlette.requests import Request

from registry.instance import Registry
from registry.repository import Repository


def registry_of(request: Request) -> Registry:
    return request.scope["moorage.registry"]


def repository_of(request: Request) -> Repository:
    """The repository the request's path names, as the dispatch resolved it (mirrored or local)."""
    return request.scope["moorage.repository"]
