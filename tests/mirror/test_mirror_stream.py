"""A cold blob reaches the client while the mirror is still downloading (and storing) it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from .conftest import Mirror, Server, blob_file, sha256

HALF = 2 << 20


@dataclass
class HeldBlob:
    mirror: Mirror
    data: bytes
    digest: str
    release: threading.Event  # set it to let the upstream send the second half
    requests: list[str]  # the methods the upstream got


def mirror_of_held_blob(start_mirror: Callable[..., Mirror], servers: Callable[..., Server]) -> HeldBlob:
    """A mirror of an upstream whose every blob is the same random 4 MiB: it sends the first half at once and
    holds the second until ``release`` is set."""
    data = os.urandom(2 * HALF)
    release = threading.Event()
    requests: list[str] = []

    async def slow_blob(request: Request) -> StreamingResponse:
        requests.append(request.method)

        async def body() -> AsyncIterator[bytes]:
            yield data[:HALF]
            while not release.is_set():  # the second half waits for the test's go
                await asyncio.sleep(0.01)
            yield data[HALF:]

        return StreamingResponse(body(), headers={"Content-Length": str(len(data))})

    upstream = servers(Starlette(routes=[Route("/v2/{name:path}/blobs/{digest}", slow_blob)]))
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    return HeldBlob(mirror, data, sha256(data), release, requests)


def test_first_client_does_not_wait_for_the_whole_blob(
    start_mirror: Callable[..., Mirror], servers: Callable[..., Server]
) -> None:
    held = mirror_of_held_blob(start_mirror, servers)
    mirror, data, digest, release = held.mirror, held.data, held.digest, held.release
    got = bytearray()
    early = 0
    with mirror.client() as c, c.stream("GET", f"/v2/up/x/blobs/{digest}") as r:
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        for chunk in r.iter_bytes():
            got += chunk
            if not release.is_set() and len(got) >= HALF:
                early = len(got)
                assert not blob_file(mirror.root, digest).exists()  # not published before verified
                release.set()
    assert early >= HALF  # the first half arrived while the upstream was still holding the rest
    assert bytes(got) == data
    mirror.settle()
    assert blob_file(mirror.root, digest).read_bytes() == data
    assert held.requests == ["GET"]


def test_download_outlives_the_client_that_started_it(
    start_mirror: Callable[..., Mirror], servers: Callable[..., Server]
) -> None:
    held = mirror_of_held_blob(start_mirror, servers)
    with held.mirror.client() as c, c.stream("GET", f"/v2/up/x/blobs/{held.digest}") as r:
        next(r.iter_bytes())  # then hang up
    held.release.set()
    held.mirror.settle()
    assert blob_file(held.mirror.root, held.digest).read_bytes() == held.data


def test_broken_upstream_download_is_discarded_and_retried(
    start_mirror: Callable[..., Mirror], servers: Callable[..., Server]
) -> None:
    data = os.urandom(2 * HALF)
    digest = sha256(data)
    calls = []

    async def flaky_blob(request: Request) -> StreamingResponse:
        calls.append(1)
        broken = len(calls) == 1

        async def body() -> AsyncIterator[bytes]:
            yield data[:HALF]
            if broken:
                raise RuntimeError("upstream dies mid-blob")
            yield data[HALF:]

        return StreamingResponse(body(), headers={"Content-Length": str(len(data))})

    upstream = servers(Starlette(routes=[Route("/v2/{name:path}/blobs/{digest}", flaky_blob)]))
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        try:
            got = c.get(f"/v2/up/x/blobs/{digest}").content
            assert got != data
        except httpx.HTTPError:
            pass  # cut short: the client knows the body is incomplete
        mirror.settle()
        assert not blob_file(mirror.root, digest).exists()
        assert list(mirror.root.glob("docker/registry/v2/repositories/up/x/_uploads/*")) == []
        assert c.get(f"/v2/up/x/blobs/{digest}").content == data  # the next request downloads again
    mirror.settle()
    assert blob_file(mirror.root, digest).read_bytes() == data and len(calls) == 2
