"""A pull through a mirrored prefix and a local pull run through the same /v2 handler functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from starlette.requests import Request
from starlette.responses import Response

from registry.http import routes
from registry.mirror.repository import MirroredRepository
from registry.repository import Repository

from .conftest import Mirror, Upstream, pull, push_image

Calls = list[tuple[int | None, str, str, type]]


def recording(calls: Calls) -> tuple[routes.Endpoint, ...]:
    """The endpoint table, every handler wrapped to record (port, method, handler, repository type).

The upstream is a Moorage in this process too: the port tells its requests from the mirror's."""

    def wrap(handler: routes.Handler) -> routes.Handler:
        async def recorded(request: Request) -> Response:
            repository = request.scope.get("moorage.repository")
            name = f"{handler.__module__}.{handler.__qualname__}"
            calls.append((request.url.port, request.method, name, type(repository)))
            return await handler(request)

        return recorded

    return tuple(
        dataclasses.replace(e, methods={m: (wrap(h), rule) for m, (h, rule) in e.methods.items()})
        for e in routes.ENDPOINTS
    )


def test_mirrored_and_local_pulls_take_the_same_handlers(
    upstream: Upstream, start_mirror: Callable[..., Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    monkeypatch.setattr(routes, "ENDPOINTS", recording(calls))
    push_image(upstream.url, "team/app", "v1", [b"layer-a", b"layer-b"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    push_image(mirror.url, "local/app", "v1", [b"layer-c", b"layer-d"])
    with mirror.client() as c:
        calls.clear()
        pull(c, "up/team/app", "v1")  # cold: manifest and blobs come from the upstream
        mirrored = [call[1:] for call in calls if call[0] == mirror.server.port]
        assert len(mirrored) < len(calls)  # the upstream was asked
        calls.clear()
        pull(c, "local/app", "v1")
        local = [call[1:] for call in calls]
        calls.clear()
        for path in ("/v2/up/team/app/tags/list", "/v2/local/app/tags/list"):
            assert c.get(path).status_code == 200
        tags = [call[1:] for call in calls if call[0] == mirror.server.port]
    assert [(m, h) for m, h, _ in mirrored] == [(m, h) for m, h, _ in local]
    assert [h for _, h, _ in mirrored] == ["registry.api.manifests.get_manifest"] + ["registry.api.blobs.get_blob"] * 3
    assert {r for _, _, r in mirrored} == {MirroredRepository}  # the upstream sits under the handler
    assert {r for _, _, r in local} == {Repository}
    assert tags == [("GET", "registry.api.tags.list_tags", MirroredRepository),
                    ("GET", "registry.api.tags.list_tags", Repository)]
