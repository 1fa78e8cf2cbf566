"""``GET /v2/_catalog``: repositories in lexical order, paged, filtered by what the caller may pull."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.context import registry_of
from registry.api.paging import next_link, page_size

DEFAULT_PAGE = 100


async def list_repositories(request: Request) -> Response:
    registry = registry_of(request)
    n = page_size(request, DEFAULT_PAGE)
    assert n is not None
    last = request.query_params.get("last") or None
    grant = request.scope["moorage.grant"]
    names: list[str] = []
    more = False
    cursor = last
    while n and len(names) < n:
        page, more = await registry.catalog.page(cursor, n - len(names))
        if not page:
            break
        cursor = page[-1]
        names.extend([name for name in page if await registry.access.may_list(grant, name)])
        if not more:
            break
    headers = {"Link": next_link(request, cursor, n)} if more and cursor else {}
    return JSONResponse({"repositories": names}, headers=headers)
