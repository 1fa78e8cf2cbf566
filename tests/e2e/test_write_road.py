"""Every repository change takes the write path: a real ``docker push`` (with its cross-repository mount),
a web UI delete and a mirrored ``docker pull``, against Moorage served in this process with
``RepositoryWriter``'s methods recorded and every store's writing method checked to run inside one of them
(as tests/mirror/test_one_road.py does for reads)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.config import parse
from registry.http.app import create_app
from registry.writes.actor import Actor
from registry.writes.writer import RepositoryWriter
from tests.inprocess import InProcessServer
from tests.storewrites import SELF_REPAIR, STORES, WRITING
from tests.ui.conftest import csrf

from .clients import Docker
from .images import ImageFactory

WRITER_METHODS = ("put_manifest", "tag", "delete", "relied_on", "start_upload", "append_upload", "commit_upload",
                  "push_blob", "cancel_upload", "mount", "delete_blob")
INSIDE = contextvars.ContextVar("inside_the_write_path", default=False)
Call = tuple[str, str | None]  # writer method, kind of actor (None: no actor argument)


def recording_writer(method: Callable[..., Any], name: str, calls: list[Call]) -> Callable[..., Any]:
    """``method``, recorded in ``calls``; the stores may write while it runs."""

    @functools.wraps(method)
    async def recorded(self: object, *args: Any, **kwargs: Any) -> Any:
        actor = next((a for a in [*args, *kwargs.values()] if isinstance(a, Actor)), None)
        calls.append((name, actor.kind if actor is not None else None))
        token = INSIDE.set(True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            INSIDE.reset(token)

    return recorded


def checked_store(method: Callable[..., Any], name: str, outside: list[str]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def checked(self: object, *args: Any, **kwargs: Any) -> Any:
        if not INSIDE.get():
            outside.append(f"{type(self).__name__}.{name}")
        return await method(self, *args, **kwargs)

    return checked


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[Call], list[str]]]:
    calls: list[Call] = []
    outside: list[str] = []
    for name in WRITER_METHODS:
        monkeypatch.setattr(RepositoryWriter, name, recording_writer(getattr(RepositoryWriter, name), name, calls))
    for cls, name in SELF_REPAIR:
        monkeypatch.setattr(cls, name, recording_writer(getattr(cls, name), name, []))
    for store in STORES:
        cls, methods = WRITING[store]
        for name in methods:
            monkeypatch.setattr(cls, name, checked_store(getattr(cls, name), name, outside))
    yield calls, outside


def serve(root: Path, **sections: Any) -> Iterator[InProcessServer]:
    server = InProcessServer(create_app(parse({"storage": {"filesystem": {"rootdirectory": str(root)}},
                                               **sections}))).start()
    yield server
    server.stop()


def test_push_mount_ui_delete_and_mirrored_pull_take_the_write_path(
    recorded: tuple[list[Call], list[str]], docker: Docker, images: ImageFactory, tmp_path: Path
) -> None:
    calls, outside = recorded
    registry_servers = serve(tmp_path / "registry")
    registry = next(registry_servers)
    mirror_servers = serve(tmp_path / "mirror", proxy={"upstreams": [{"prefix": "up", "url": registry.url}]})
    mirror = next(mirror_servers)
    try:
        image = images.docker_archive("e2e/road:1")
        docker.load(image.path)
        pushed = f"{registry.host}/team/app:1"
        docker.tag(image.tag, pushed)
        docker.push(pushed)
        push = list(calls)
        calls.clear()

        copy = f"{registry.host}/team/copy:1"
        docker.tag(image.tag, copy)
        _, out = docker.push(copy)
        assert "Mounted from team/app" in out, out
        mount = list(calls)
        calls.clear()

        with httpx.Client(base_url=registry.url, timeout=30, follow_redirects=True) as ui:
            confirm = ui.get("/ui/delete/team/copy:1")
            assert confirm.status_code == 200, confirm.text
            assert ui.post("/ui/delete/team/copy:1", data={"csrf": csrf(confirm.text)}).status_code == 200
            assert ui.get("/v2/team/copy/tags/list").json()["tags"] == []
        ui_delete = list(calls)
        calls.clear()

        docker.rmi(pushed, copy, image.tag)
        docker.pull(f"{mirror.host}/up/team/app:1")
        mirrored = list(calls)
    finally:
        for servers in (mirror_servers, registry_servers):
            next(servers, None)
    print(f"push: {push}\nmount: {mount}\nUI delete: {ui_delete}\nmirrored pull: {mirrored}")
    assert outside == []  # no store was written outside a writer method
    assert ("put_manifest", "anonymous") in push and ("commit_upload", "anonymous") in push
    assert {kind for _, kind in push} <= {"anonymous", None}  # relied_on (a HEAD) names no actor
    assert ("mount", "anonymous") in mount and ("put_manifest", "anonymous") in mount
    assert ui_delete == [("delete", "anonymous")]
    assert ("put_manifest", "mirror") in mirrored and ("tag", "mirror") in mirrored
    assert ("commit_upload", "mirror") in mirrored and {kind for _, kind in mirrored} == {"mirror"}
