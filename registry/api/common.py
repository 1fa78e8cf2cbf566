"""Helpers every handler uses: the services, pagination and the standard headers."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from registry.errors import RegistryError
from registry.repository import Repository
from registry.services import Services

MAX_PAGE = 10_000


def services(request: Request) -> Services:
    return request.scope["moorage.services"]


def repository(request: Request) -> Repository:
    """The repository the request's path names, as the app's dispatch resolved it."""
    return request.scope["moorage.repository"]


def page_size(request: Request, default: int | None) -> int | None:
    """The ``n`` query parameter: absent gives ``default``; bad values give PAGINATION_NUMBER_INVALID."""
    raw = request.query_params.get("n")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw}) from None
    if value < 0:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw})
    return min(value, MAX_PAGE)


def next_link(request: Request, last: str, n: int) -> str:
    path = request.scope["path"]
    return f'<{path}?{urlencode({"last": last, "n": n})}>; rel="next"'


def digest_headers(digest: str) -> dict[str, str]:
    return {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}


def not_modified(request: Request, digest: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return digest in tags or "*" in tags
