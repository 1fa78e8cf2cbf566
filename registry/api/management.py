"""What the management API (``/api/v1/users``, ``teams``, ``namespaces``, ``changes``, ``account``) shares:
the caller, authenticated as on /v2 (Basic with the registry's users, Bearer tokens of its token server);
JSON bodies (an object of known fields, at most 1 MiB); ``n``/``last`` paging with a ``Link`` header; and
the registry's error format for every refusal.  The handlers stay thin: the service (auth/manage.py)
decides.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from auth.base import AuthFailure
from auth.terms import Caller, Refused
from registry.api.paging import page_size
from registry.errors import RegistryError, error_response
from registry.http.urls import client_address
from registry.instance import Registry
from storage.database import DatabaseUnavailable

if TYPE_CHECKING:
    from auth.manage import Management

MAX_BODY = 1024 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000

Handler = Callable[[Request, Caller, "Management"], Awaitable[Response]]


def endpoint(registry: Registry, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The caller identified, the service at hand, every refusal in the registry's error format."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            management = registry.management
            if management is None:
                raise RegistryError("UNSUPPORTED", "user management needs auth.database in the config",
                                    status=404)
            return await handler(request, await caller(registry, request), management)
        except Refused as e:
            return error_response(RegistryError(e.code, e.message, e.detail, e.status))
        except RegistryError as e:
            return error_response(e)
        except AuthFailure as e:
            headers = {**({"WWW-Authenticate": e.challenge} if e.challenge else {}), **e.headers}
            return error_response(RegistryError(e.code, e.message, e.detail, e.status, headers))
        except DatabaseUnavailable as e:
            return error_response(RegistryError("UNAVAILABLE", str(e),
                                                headers={"Retry-After": str(max(1, round(e.retry_after)))}))

    return run


async def caller(registry: Registry, request: Request) -> Caller:
    """Who calls: every endpoint needs a logged-in user (401 with the Basic challenge otherwise), with
    their password: an access token's scope is repositories, so it reaches none of this (403)."""
    address = client_address(request, registry.config.http)
    grant = await registry.login.identify(request.headers, address)
    if grant.subject is None:
        raise AuthFailure(401, "UNAUTHORIZED", "authentication required", challenge=registry.login.challenge)
    if grant.scope is not None:
        raise AuthFailure(403, "DENIED", "an access token reaches repositories only: manage users, teams and "
                          "namespaces with your password")
    return Caller(grant.subject, address, teams=registry.login.teams(grant.subject))


async def body(request: Request, allowed: Mapping[str, type | tuple[type, ...]],
               required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object sent, with only ``allowed`` fields of their types (a clear 400 otherwise; 413
    past MAX_BODY, read no further)."""
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise RegistryError("INVALID_REQUEST", f"the body is larger than {MAX_BODY} bytes", status=413)
    except ClientDisconnect:
        raise RegistryError("INVALID_REQUEST", "the client went away") from None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError("INVALID_REQUEST", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise RegistryError("INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise RegistryError("INVALID_REQUEST", f"unknown field {unknown[0]!r} (known: {', '.join(allowed)})")
    for name in required:
        if name not in value:
            raise RegistryError("INVALID_REQUEST", f"{name!r} is required")
    for name, kinds in allowed.items():
        if name in value and value[name] is not None and not isinstance(value[name], kinds):
            raise RegistryError("INVALID_REQUEST", f"{name!r} has the wrong type")
        if isinstance(value.get(name), bool) and kinds is int:
            raise RegistryError("INVALID_REQUEST", f"{name!r} must be a number")
    return value


def page(request: Request) -> tuple[str | None, int]:
    """``last`` and ``n`` (1 to MAX_PAGE, default DEFAULT_PAGE)."""
    return request.query_params.get("last") or None, page_size(request, DEFAULT_PAGE, least=1, most=MAX_PAGE)


async def paged(request: Request, key: str, fetch: Callable[[str | None, int], Awaitable[list[Any]]],
                cursor: Callable[[Any], str], shown: Callable[[Any], dict[str, Any]]) -> Response:
    """The page the request asks for: ``fetch(last, limit)`` returns up to ``limit`` items after ``last``."""
    last, n = page(request)
    return listing(request, key, await fetch(last, n + 1), n, cursor, shown)


def listing(request: Request, key: str, items: list[Any], n: int, cursor: Callable[[Any], str],
            shown: Callable[[Any], dict[str, Any]]) -> Response:
    """A page of ``items`` (fetched n + 1 to know whether more follow), ``Link`` to the next one."""
    more = len(items) > n
    items = items[:n]
    headers = {}
    if more and items:
        headers["Link"] = f'<{request.url.path}?{urlencode({"last": cursor(items[-1]), "n": n})}>; rel="next"'
    return JSONResponse({key: [shown(item) for item in items]}, headers=headers)


def time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
