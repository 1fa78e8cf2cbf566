"""``/api/v1/replication/...``: the replication rules, their executions and items, and manual runs
(JSON; admins only when auth is configured; errors in the registry's format; docs/openapi.yaml).

    GET  /api/v1/replication/rules                                  rules, each with its latest execution
    GET  /api/v1/replication/rules/{rule}                           one rule
    GET  /api/v1/replication/rules/{rule}/executions?n=             its executions, newest first
    POST /api/v1/replication/rules/{rule}/executions                run it now (202, the queued execution)
    GET  /api/v1/replication/rules/{rule}/executions/{id}           one execution
    GET  /api/v1/replication/rules/{rule}/executions/{id}/items     its items (?status=failed, ?last=, ?n=)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.base import Access, AuthFailure
from registry.errors import RegistryError, auth_failure_response, error_response
from registry.http.urls import client_address, origin
from registry.instance import Registry
from registry.replication.executions import Execution
from registry.replication.rules import Rule

if TYPE_CHECKING:  # the workers import the HTTP client: only when a rule is configured
    from registry.replication.worker import Replication

ACCESS = [Access("registry", "replication", "*")]
BASE = "/api/v1/replication"
DEFAULT_PAGE = 20
MAX_PAGE = 1000


class ReplicationAPI:
    def __init__(self, registry: Registry, replication: Replication | None) -> None:
        self.registry = registry
        self.replication = replication

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{BASE}/rules", self.guarded(self.list_rules), methods=["GET"]),
            Route(f"{BASE}/rules/{{rule}}", self.guarded(self.get_rule), methods=["GET"]),
            Route(f"{BASE}/rules/{{rule}}/executions", self.guarded(self.list_executions), methods=["GET"]),
            Route(f"{BASE}/rules/{{rule}}/executions", self.guarded(self.run_rule), methods=["POST"]),
            Route(f"{BASE}/rules/{{rule}}/executions/{{execution}}", self.guarded(self.get_execution),
                  methods=["GET"]),
            Route(f"{BASE}/rules/{{rule}}/executions/{{execution}}/items", self.guarded(self.list_items),
                  methods=["GET"]),
        ]

    def guarded(self, handler: Any) -> Any:
        """Admins only; the registry's JSON errors."""

        async def endpoint(request: Request) -> Response:
            try:
                await self.registry.access.authorize(request.headers, ACCESS,
                                                     lambda: origin(request, self.registry.config.http),
                                                     client_address(request, self.registry.config.http))
                return await handler(request)
            except AuthFailure as e:
                return auth_failure_response(e)
            except RegistryError as e:
                return error_response(e)

        return endpoint

    def rule(self, request: Request) -> Rule:
        name = request.path_params["rule"]
        rule = self.replication.rules.get(name) if self.replication is not None else None
        if rule is None:
            raise RegistryError("NAME_UNKNOWN", f"no replication rule {name!r}", status=404, detail={"rule": name})
        return rule

    async def execution(self, request: Request) -> Execution:
        rule = self.rule(request)
        assert self.replication is not None
        execution_id = request.path_params["execution"]
        found = await self.replication.store.load(rule.name, execution_id) if safe_id(execution_id) else None
        if found is None:
            raise RegistryError("NAME_UNKNOWN", f"no execution {execution_id!r} of rule {rule.name!r}", status=404,
                                detail={"rule": rule.name, "execution": execution_id})
        return found

    async def list_rules(self, request: Request) -> Response:
        rules = []
        for rule in (self.replication.rules.values() if self.replication is not None else []):
            assert self.replication is not None
            latest = await self.replication.store.recent(rule.name, 1)
            rules.append({**rule.summary(), "latest": latest[0].as_json() if latest else None})
        return JSONResponse({"rules": rules})

    async def get_rule(self, request: Request) -> Response:
        rule = self.rule(request)
        assert self.replication is not None
        latest = await self.replication.store.recent(rule.name, 1)
        return JSONResponse({**rule.summary(), "latest": latest[0].as_json() if latest else None})

    async def list_executions(self, request: Request) -> Response:
        rule = self.rule(request)
        assert self.replication is not None
        count = page_size(request.query_params.get("n"))
        executions = await self.replication.store.recent(rule.name, count)
        return JSONResponse({"rule": rule.name, "executions": [e.as_json() for e in executions]})

    async def run_rule(self, request: Request) -> Response:
        rule = self.rule(request)
        assert self.replication is not None
        if self.registry.config.storage.readonly:
            raise RegistryError("UNSUPPORTED", "the registry is in read-only mode: replication does not run")
        execution = await self.replication.trigger(rule.name)
        return JSONResponse(execution.as_json(), status_code=202,
                            headers={"Location": f"{BASE}/rules/{rule.name}/executions/{execution.id}"})

    async def get_execution(self, request: Request) -> Response:
        return JSONResponse((await self.execution(request)).as_json())

    async def list_items(self, request: Request) -> Response:
        execution = await self.execution(request)
        assert self.replication is not None
        params = request.query_params
        status = params.get("status")
        count = page_size(params.get("n"), MAX_PAGE)
        last = params.get("last", "")
        if last and not last.isdigit():
            raise RegistryError("PAGINATION_NUMBER_INVALID", "last must be an item index", detail={"last": last})
        items = await self.replication.store.items(execution) or []
        outcomes = await self.replication.store.outcomes(execution)
        start = int(last) + 1 if last else 0
        shown: list[dict[str, Any]] = []
        more = False
        for index in range(start, len(items)):
            outcome = outcomes.get(index)
            if status is not None and (outcome.status if outcome is not None else "pending") != status:
                continue
            if len(shown) == count:
                more = True
                break
            shown.append({"index": index, **items[index].as_json(),
                          "outcome": outcome.as_json() if outcome is not None else {"status": "pending"}})
        headers = {}
        if more:
            query = f"n={count}&last={shown[-1]['index']}" + (f"&status={status}" if status else "")
            headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
        return JSONResponse({"execution": execution.id, "items": shown}, headers=headers)


def page_size(raw: str | None, default: int = DEFAULT_PAGE) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) <= MAX_PAGE:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"n must be a number from 1 to {MAX_PAGE}",
                            detail={"n": raw})
    return int(raw)


def safe_id(text: str) -> bool:
    return 0 < len(text) <= 64 and all(c.isalnum() or c == "-" for c in text)
