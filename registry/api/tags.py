"""``GET /v2/<name>/tags/list`` with ``n``/``last`` pagination."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.context import repository_of
from registry.api.paging import next_link, page_size
from registry.errors import RegistryError
from registry.repository import RepositoryUnknown


async def list_tags(request: Request) -> Response:
    repo = repository_of(request)
    n = page_size(request, None)
    try:
        page = await repo.tag_page(request.query_params.get("last") or None, n)
    except RepositoryUnknown:
        raise RegistryError("NAME_UNKNOWN", detail={"name": repo.name}) from None
    headers = {}
    if page.more and n and page.tags:
        headers["Link"] = next_link(request, page.tags[-1], n)
    if page.warning:
        headers["Warning"] = page.warning
    return JSONResponse({"name": repo.name, "tags": page.tags}, headers=headers)
