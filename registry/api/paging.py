"""``n``/``last`` pagination of the tag list and the catalog."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from registry.errors import RegistryError

MAX_PAGE = 10_000


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
