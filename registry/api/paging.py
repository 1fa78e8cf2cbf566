"""``n``/``last`` pagination of the tag list and the catalog."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import urlencode

from starlette.requests import Request

from registry.errors import RegistryError

MAX_PAGE = 10_000
Default = TypeVar("Default", int, None)


def page_size(request: Request, default: Default, *, least: int = 0, most: int = MAX_PAGE) -> int | Default:
    """The ``n`` query parameter, capped at ``most``: absent gives ``default``; one that is not a number or is
    below ``least`` gives PAGINATION_NUMBER_INVALID (the /v2 lists allow 0, the /api/v1 lists start at 1)."""
    raw = request.query_params.get("n")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw}) from None
    if value < least:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw})
    return min(value, most)


def next_link(request: Request, last: str, n: int) -> str:
    path = request.scope["path"]
    return f'<{path}?{urlencode({"last": last, "n": n})}>; rel="next"'
