"""Concurrent writes of one tag (issue 24 item 7): a DELETE racing PUTs of the same tag on the filesystem
answers 202 or 404 and each PUT 201, never a 503 with a traceback, and the tag ends consistent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from registry.config import parse
from registry.http.app import create_app

from .conftest import OCI_MANIFEST, image_manifest, make_client

ROUNDS = 150


def test_delete_racing_puts_of_one_tag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    with make_client(root) as c:
        manifests = [image_manifest(c, "team/app", [f"layer {i}".encode()]) for i in range(2)]
    caplog.set_level(logging.WARNING)
    seen: dict[str, set[int]] = {"PUT": set(), "DELETE": set()}

    async def race() -> list[str]:
        app = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
            async def put(i: int) -> None:
                r = await client.put("/v2/team/app/manifests/moving", content=manifests[i % 2],
                                     headers={"Content-Type": OCI_MANIFEST})
                seen["PUT"].add(r.status_code)

            async def delete() -> None:
                r = await client.delete("/v2/team/app/manifests/moving")
                seen["DELETE"].add(r.status_code)

            for i in range(ROUNDS):
                await asyncio.gather(put(i), delete(), put(i + 1), delete())
            tags = (await client.get("/v2/team/app/tags/list")).json()["tags"]
            current = await client.get("/v2/team/app/manifests/moving", headers={"Accept": OCI_MANIFEST})
            await app.registry.close()
        return tags if current.status_code == 200 else [t for t in tags if t != "moving"]

    tags = asyncio.run(race())
    assert seen == {"PUT": {201}, "DELETE": seen["DELETE"] & {202, 404}} and 202 in seen["DELETE"], seen
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert tags in ([], ["moving"])  # listed exactly when it resolves
