"""Repository search: ``GET /v1/search`` as the Docker daemon calls it (``docker search HOST/term``),
and the catalog scan the web UI's lists and search share.

The names come from the catalog's last walk (``storage.catalog.Catalog.names``, at most seconds old),
in lexical order, and each is kept only when the caller may pull it (the access controller's rules for
the caller, as on /v2).
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_right
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.base import AuthFailure, Grant
from registry.http.urls import client_address
from registry.instance import Registry
from registry.writes.events import EventKind, RepositoryEvent
from storage.catalog import Catalog
from storage.database import DatabaseUnavailable

PACE = 64  # names examined between two turns of the event loop (the web UI's search reads each one's tags)
V1_DEFAULT_PAGE = 25
V1_MAX_PAGE = 100

Match = Callable[[str], Awaitable[bool | None]]  # None: out of budget, stop before this name


async def scan(registry: Registry, caller: Grant, match: Match, last: str | None, want: int | None,
               budget: int | None = None) -> tuple[list[str], str | None]:
    """Up to ``want`` (all when None) names after ``last`` that ``caller`` may pull and ``match``
    accepts, looking at no more than ``budget`` names (all when None) and stopping where ``match`` says
    its own budget is spent (None); and the name to continue after
    (None at the end of the catalog).  The names come from the catalog's last walk (``Catalog.names``),
    so a search costs what it examines, not a walk of the tree."""
    names = await registry.catalog.names()
    start = bisect_right(names, last) if last else 0
    end = len(names) if budget is None else min(len(names), start + budget)
    found: list[str] = []
    for i in range(start, end):
        name = names[i]
        if registry.login.may_pull(caller, name):
            verdict = await match(name)
            if verdict is None:
                return found, names[i - 1] if i > start else last
            if verdict:
                found.append(name)
                if want is not None and len(found) >= want:
                    return found, name if i + 1 < len(names) else None
        if (i - start) % PACE == PACE - 1:
            await asyncio.sleep(0)  # the rules are checked on the loop: let other requests in now and then
    if end == len(names):
        return found, None
    return found, names[end - 1] if end > start else last


class NewRepositories:
    """Hears of pushes: a repository this process creates is in the names searches read at once, not
    only after the catalog's next walk."""

    kinds = frozenset({EventKind.MANIFEST_PUSHED, EventKind.TAG_SET})

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def on_event(self, event: RepositoryEvent) -> None:
        self.catalog.created(event.repository)


def name_contains(term: str) -> Match:
    term = term.lower()

    async def match(name: str) -> bool:
        return term in name

    return match


class V1Search:
    def __init__(self, registry: Registry, describe: Callable[[str], Awaitable[str]]) -> None:
        self.registry = registry
        self.describe = describe  # a repository's one-line description (its image's label)

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/search", self.search, methods=["GET"]), Route("/v1/_ping", self.ping, methods=["GET"])]

    async def search(self, request: Request) -> Response:
        """Docker's answer: ``{"num_results", "query", "page", "page_size", "num_pages", "results"}``."""
        term = request.query_params.get("q", "").strip()
        try:
            size = int(request.query_params.get("n") or V1_DEFAULT_PAGE)
            page = int(request.query_params.get("page") or 1)
        except ValueError:
            return v1_error(400, "n and page must be whole numbers")
        if size < 1 or page < 1:
            return v1_error(400, "n and page must be at least 1")
        size = min(size, V1_MAX_PAGE)
        try:
            caller = await self.registry.login.identify(request.headers,
                                                        client_address(request, self.registry.config.http))
            await self.registry.login.refresh()
            names, _ = await scan(self.registry, caller, name_contains(term), None, None)
        except AuthFailure as e:
            headers = {**({"WWW-Authenticate": e.challenge} if e.challenge else {}), **e.headers}
            return v1_error(e.status, e.message, headers or None)
        except DatabaseUnavailable as e:
            return v1_error(503, str(e), {"Retry-After": str(max(1, round(e.retry_after)))})
        start = (page - 1) * size
        shown = names[start:start + size]
        descriptions = await asyncio.gather(*(self.describe(name) for name in shown))
        results = [
            {"name": name, "description": description, "star_count": 0, "is_official": False,
             "is_automated": False}
            for name, description in zip(shown, descriptions, strict=True)
        ]
        return JSONResponse({
            "num_results": len(names), "query": term, "page": page, "page_size": size,
            "num_pages": max(1, math.ceil(len(names) / size)), "results": results,
        })

    async def ping(self, request: Request) -> Response:
        """The daemon pings the v1 endpoint before it searches."""
        return JSONResponse(True, headers={"X-Docker-Registry-Standalone": "true"})


def v1_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    code = {401: "UNAUTHORIZED", 403: "DENIED", 503: "UNAVAILABLE"}.get(status, "INVALID_REQUEST")
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=headers)
