"""The management API's routes under ``/api/v1`` (users, teams, namespaces, their members, the change log
and the caller's account): one route per path, the method dispatched here so that a wrong one is a JSON
405 too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from registry.api import namespaces, teams, users
from registry.api.management import Handler, endpoint
from registry.errors import RegistryError, error_response
from registry.instance import Registry

PREFIX = "/api/v1"
EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
TABLE: list[tuple[str, dict[str, Handler]]] = [
    ("/users", {"GET": users.list_users, "POST": users.create_user}),
    ("/users/{name}", {"GET": users.get_user, "PATCH": users.update_user, "DELETE": users.remove_user}),
    ("/account", {"GET": users.account}),
    ("/teams", {"GET": teams.list_teams, "POST": teams.create_team}),
    ("/teams/{name}", {"GET": teams.get_team, "DELETE": teams.remove_team}),
    ("/teams/{name}/members", {"GET": teams.list_members}),
    ("/teams/{name}/members/{user}", {"PUT": teams.add_member, "DELETE": teams.remove_member}),
    ("/changes", {"GET": namespaces.list_changes}),
    ("/namespaces", {"GET": namespaces.list_namespaces, "POST": namespaces.create_namespace}),
    ("/namespaces/{path:path}/_members/{kind}/{name}", {"PUT": namespaces.set_member,
                                                         "DELETE": namespaces.remove_member}),
    ("/namespaces/{path:path}/_members", {"GET": namespaces.list_members}),
    ("/namespaces/{path:path}/_changes", {"GET": namespaces.list_changes}),
    ("/namespaces/{path:path}", {"GET": namespaces.get_namespace, "PATCH": namespaces.update_namespace,
                                 "DELETE": namespaces.remove_namespace}),
]


def routes(registry: Registry) -> list[BaseRoute]:
    return [Route(PREFIX + path, dispatcher(registry, methods), methods=EVERY_METHOD) for path, methods in TABLE]


def dispatcher(registry: Registry, methods: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    handlers = {method: endpoint(registry, handler) for method, handler in methods.items()}
    allowed = ", ".join(methods)

    async def dispatch(request: Request) -> Response:
        if request.path_params.get("kind") not in (None, *namespaces.KINDS):
            return error_response(RegistryError("NOT_FOUND", "members are users/NAME or teams/NAME"))
        handler = handlers.get(request.method)
        if handler is None:
            return error_response(RegistryError("UNSUPPORTED", f"method {request.method} not allowed here",
                                                headers={"Allow": allowed}))
        return await handler(request)

    return dispatch
