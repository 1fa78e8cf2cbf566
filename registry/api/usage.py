"""``GET /api/v1/usage``: bytes per repository and namespace (storage/accounting.py), for whoever may read
the catalog, over the repositories the catalog shows them, ``exclusive`` computed over those only.  From
the server's last walk of the tree (``UsageIndex``: at most a minute old, ``taken_at``), never a walk per
request."""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.base import Access, AuthFailure
from registry import offload
from registry.errors import auth_failure_response
from registry.http.urls import client_address, origin
from registry.instance import Registry
from storage.accounting import UsageIndex

CATALOG_ACCESS = [Access("registry", "catalog", "*")]


class V1Usage:
    def __init__(self, registry: Registry, index: UsageIndex) -> None:
        self.registry = registry
        self.index = index

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/v1/usage", self.usage, methods=["GET"])]

    async def usage(self, request: Request) -> Response:
        access = self.registry.access
        try:
            grant = await access.authorize(request.headers, CATALOG_ACCESS,
                                           lambda: origin(request, self.registry.config.http),
                                           client_address(request, self.registry.config.http))
        except AuthFailure as e:
            return auth_failure_response(e)

        async def visible(names: Collection[str]) -> list[str]:
            if grant.everything:
                return list(names)
            return [name async for name in offload.paced(names) if await access.may_list(grant, name)]

        # one cached report per caller and access token: a token's scope sees less than its user
        report = await self.index.report(("api", grant.subject, grant.everything, grant.scope), visible)
        return Response(report.encoded(), media_type="application/json",
                        headers={"Cache-Control": "private, max-age=0"})
