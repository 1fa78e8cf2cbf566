"""``GET /v2/<name>/tags/list`` with ``n``/``last`` pagination."""

from __future__ import annotations

from bisect import bisect_right

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.common import next_link, page_size, services
from registry.errors import RegistryError
from storage.driver import PathNotFound
from storage.manifests import repository_exists


async def list_tags(request: Request) -> Response:
    svc = services(request)
    name = request.path_params["name"]
    try:
        tags = await svc.tags.list(name)
    except PathNotFound:
        if not await repository_exists(svc.driver, name):
            raise RegistryError("NAME_UNKNOWN", detail={"name": name}) from None
        tags = []
    last = request.query_params.get("last")
    if last:
        tags = tags[bisect_right(tags, last) :]
    n = page_size(request, None)
    headers = {}
    if n is not None:
        if len(tags) > n and n > 0:
            headers["Link"] = next_link(request, tags[n - 1], n)
        tags = tags[:n]
    return JSONResponse({"name": name, "tags": tags}, headers=headers)
