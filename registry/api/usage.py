"""``GET /api/v1/usage``: bytes per repository and namespace (storage/accounting.py), for whoever may read
the catalog, over the repositories the catalog shows them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.base import Access, AuthFailure
from registry.errors import auth_failure_response
from registry.http.urls import origin
from registry.instance import Registry
from storage.accounting import usage_report

CATALOG_ACCESS = [Access("registry", "catalog", "*")]


class V1Usage:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/v1/usage", self.usage, methods=["GET"])]

    async def usage(self, request: Request) -> Response:
        access = self.registry.access
        try:
            grant = await access.authorize(request.headers, CATALOG_ACCESS,
                                           lambda: origin(request, self.registry.config.http))
        except AuthFailure as e:
            return auth_failure_response(e)

        async def visible(name: str) -> bool:
            return await access.may_list(grant, name)

        report = await usage_report(self.registry.driver, visible)
        return JSONResponse(report.as_json())
