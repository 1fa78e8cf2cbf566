"""``/api/v1/tokens`` and ``/api/v1/.../robots``: personal access tokens and robot accounts over HTTP
(auth/tokens.py decides; this module only speaks JSON and the registry's error format).

    POST   /api/v1/tokens                          create one of the caller's tokens: 201 {id, secret, ...}
    GET    /api/v1/tokens                          the caller's tokens (no secrets); ?user=NAME for admins
    DELETE /api/v1/tokens/{id}                     revoke (owner, admin, or the robot's namespace owner)
    GET    /api/v1/namespaces/{path}/robots        a namespace's robots (its owners)
    POST   /api/v1/namespaces/{path}/robots        create a robot {name, actions, description}
    DELETE /api/v1/robots/{name}                   remove a robot and its tokens
    GET    /api/v1/robots/{name}/tokens            a robot's tokens
    POST   /api/v1/robots/{name}/tokens            create a robot's token: 201 {id, secret, ...}

Callers authenticate with HTTP Basic and their password (or directory password). An access token
cannot manage tokens: a narrow token must not be able to mint a wider one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.base import AuthFailure
from auth.basic import basic_credentials, verify_basic
from auth.challenge import unauthorized
from auth.terms import Caller, Refused, robot_view, token_view
from registry.errors import error_body
from registry.http.urls import client_address
from registry.instance import Registry
from storage.database import DatabaseUnavailable

if TYPE_CHECKING:
    from auth.tokens import AccessTokens, NewToken

MAX_BODY = 64 * 1024
Handler = Callable[[Request, Caller], Awaitable[Response]]


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type="application/json")


class TokensAPI:
    def __init__(self, registry: Registry, tokens: AccessTokens | None) -> None:
        """``tokens`` None: the registry has no logins or no database; every route answers 404."""
        self.registry = registry
        self._tokens = tokens

    @property
    def tokens(self) -> AccessTokens:
        if self._tokens is None:
            raise Refused(404, "UNSUPPORTED", "access tokens need logins (auth.htpasswd, auth.ldap or "
                          "auth.tokenserver) and a database (database.url with S3 storage)")
        return self._tokens

    def routes(self) -> list[BaseRoute]:
        h = self.handle
        return [
            Route("/api/v1/tokens", h(self.create), methods=["POST"]),
            Route("/api/v1/tokens", h(self.list), methods=["GET"]),
            Route("/api/v1/tokens/{id}", h(self.revoke), methods=["DELETE"]),
            Route("/api/v1/namespaces/{path:path}/robots", h(self.create_robot), methods=["POST"]),
            Route("/api/v1/namespaces/{path:path}/robots", h(self.list_robots), methods=["GET"]),
            Route("/api/v1/robots/{name}", h(self.remove_robot), methods=["DELETE"]),
            Route("/api/v1/robots/{name}/tokens", h(self.create), methods=["POST"]),
            Route("/api/v1/robots/{name}/tokens", h(self.list), methods=["GET"]),
        ]

    def handle(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The caller from Basic credentials; refusals and an unavailable database in the error format."""

        async def endpoint(request: Request) -> Response:
            try:
                self.tokens  # noqa: B018 - 404 before asking for credentials when there are no tokens
                caller = await self.caller(request)
                return await handler(request, caller)
            except AuthFailure as e:
                headers = {**({"WWW-Authenticate": e.challenge} if e.challenge else {}), **e.headers}
                return error(e.status, e.code, e.message, headers)
            except Refused as e:
                return error(e.status, e.code, e.message)
            except DatabaseUnavailable as e:
                return error(503, "UNAVAILABLE", str(e), {"Retry-After": str(max(1, round(e.retry_after)))})

        return endpoint

    async def caller(self, request: Request) -> Caller:
        login = self.registry.login
        address = client_address(request, self.registry.config.http)
        credentials = basic_credentials(request.headers.get("authorization"))
        if credentials is None:
            raise unauthorized(login.challenge, [], "log in with your user name and password (HTTP Basic)")
        identity = await verify_basic(login.credentials, login.challenge, *credentials, address, [])
        if identity.scope is not None:
            raise AuthFailure(403, "DENIED", "an access token cannot manage access tokens: use your password")
        return Caller(identity.name, address, teams=identity.teams)

    # --- tokens --------------------------------------------------------------------------------------

    # The caller's tokens at /api/v1/tokens (an admin's ?user=: that user's), a robot's at
    # /api/v1/robots/{name}/tokens.

    async def create(self, request: Request, caller: Caller) -> Response:
        body = await read_json(request)
        made = await self.tokens.create(caller, body.get("name"), body.get("scopes"), body.get("repositories"),
                                        body.get("expires"), robot=request.path_params.get("name"))
        return created(made)

    async def list(self, request: Request, caller: Caller) -> Response:
        robot = request.path_params.get("name")
        user = request.query_params.get("user") if robot is None else None
        records = await self.tokens.list(caller, user=user, robot=robot)
        return JSONResponse({"tokens": [token_view(r) for r in records]})

    async def revoke(self, request: Request, caller: Caller) -> Response:
        await self.tokens.revoke(caller, request.path_params["id"])
        return Response(status_code=204)

    # --- robots --------------------------------------------------------------------------------------

    async def create_robot(self, request: Request, caller: Caller) -> Response:
        body = await read_json(request)
        robot = await self.tokens.create_robot(caller, request.path_params["path"], body.get("name"),
                                               body.get("actions", ["pull"]), body.get("description"))
        return JSONResponse(robot_view(robot), status_code=201)

    async def list_robots(self, request: Request, caller: Caller) -> Response:
        robots = await self.tokens.list_robots(caller, request.path_params["path"])
        return JSONResponse({"robots": [robot_view(r) for r in robots]})

    async def remove_robot(self, request: Request, caller: Caller) -> Response:
        await self.tokens.remove_robot(caller, request.path_params["name"])
        return Response(status_code=204)



def created(made: NewToken) -> Response:
    """201 with the secret: the only time it is shown."""
    return JSONResponse({**token_view(made.record), "secret": made.secret}, status_code=201,
                        headers={"Cache-Control": "no-store"})


async def read_json(request: Request) -> dict[str, Any]:
    """A small JSON object (at most 64 KiB), or a 400 Refused."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(400, "INVALID_REQUEST", "send a JSON object (Content-Type: application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, "SIZE_INVALID", f"the request body is larger than {MAX_BODY // 1024} KiB")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "INVALID_REQUEST", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "INVALID_REQUEST", "the body must be a JSON object")
    return data
