"""Replication tests in one process: two Moorage apps, "here" (the replicating registry, whose Registry the
engine uses) and "there" (a remote Moorage reached over httpx through its ASGI app, behind ``Recorder``,
which counts requests and fails them on demand).  Content is pushed with the /v2 API like a client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.config import parse
from registry.http.app import RegistryApp, create_app
from registry.replication.executions import ExecutionStore
from registry.replication.local import LocalSide
from registry.replication.remote import RemoteSide
from registry.replication.rules import PUSH, Remote, Rule
from registry.replication.runner import Runner, Sides

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"
REMOTE_URL = "http://there.test"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


class Recorder:
    """ASGI middleware: records (method, path, query) of each request; ``fail(method, path, query)`` may
    return a status to answer instead (with a body in the spec's error format)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str, str]] = []
        self.fail: Callable[[str, str, str], int | None] | None = None
        self.latency = 0.0  # seconds each request takes before it reaches the app (a network's)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.latency)
            query = scope.get("query_string", b"").decode()
            self.requests.append((scope["method"], scope["path"], query))
            status = self.fail(scope["method"], scope["path"], query) if self.fail is not None else None
            if status is not None:
                while (await receive()).get("more_body"):  # drain what the client sends
                    pass
                body = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"injected {status}"}]}).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if m == method and contains in p)


@dataclass
class Registries:
    here: RegistryApp
    there: RegistryApp
    recorder: Recorder
    client_here: httpx.AsyncClient  # a /v2 client of "here"
    client_there: httpx.AsyncClient  # a /v2 client of "there" (not recorded)
    remote_http: httpx.AsyncClient  # what replication uses to reach "there" (recorded)

    def remote(self, **kwargs: Any) -> Remote:
        return Remote("there", REMOTE_URL, **kwargs)

    def sides(self, rule: Rule) -> Sides:
        remote = RemoteSide(rule.remote, self.remote_http, rule.requestretries, rule.chunksize)
        local = LocalSide(self.here.registry, rule.name)
        return Sides(local, remote, remote) if rule.direction == PUSH else Sides(remote, local, remote)

    def runner(self, rule: Rule, alerts: list[dict[str, Any]] | None = None) -> Runner:
        async def alert(event: dict[str, Any]) -> None:
            if alerts is not None:
                alerts.append(event)

        return Runner(rule, self.sides(rule), ExecutionStore(self.here.registry.driver), "test", alert)


def asgi_client(app: ASGIApp, base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@asynccontextmanager
async def registries(tmp_path: Path, here: dict[str, Any] | None = None,
                     there: dict[str, Any] | None = None) -> AsyncIterator[Registries]:
    apps = []
    for name, extra in (("here", here), ("there", there)):
        raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / name)}}, **(extra or {})}
        apps.append(create_app(parse(raw)))
    recorder = Recorder(apps[1])
    pair = Registries(apps[0], apps[1], recorder, asgi_client(apps[0], "http://here.test"),
                      asgi_client(apps[1], REMOTE_URL), asgi_client(recorder, REMOTE_URL))
    try:
        yield pair
    finally:
        for client in (pair.client_here, pair.client_there, pair.remote_http):
            await client.aclose()
        for app in apps:
            await app.registry.close()


async def push_blob(client: httpx.AsyncClient, name: str, data: bytes) -> dict[str, Any]:
    r = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201, r.text
    return {"mediaType": OCI_LAYER, "digest": sha256(data), "size": len(data)}


async def put_manifest(client: httpx.AsyncClient, name: str, reference: str, doc: dict[str, Any]) -> tuple[str, bytes]:
    content = json.dumps(doc).encode()
    r = await client.put(f"/v2/{name}/manifests/{reference}", content=content,
                         headers={"content-type": doc["mediaType"]})
    assert r.status_code == 201, r.text
    return sha256(content), content


async def push_image(client: httpx.AsyncClient, name: str, tag: str | None, layers: list[bytes],
                     labels: dict[str, str] | None = None, platform: str = "linux/amd64",
                     **extra: Any) -> tuple[str, bytes]:
    os_, arch = platform.split("/")
    config = json.dumps({"architecture": arch, "os": os_, "config": {"Labels": labels or {}}}).encode()
    config_desc = {**await push_blob(client, name, config), "mediaType": OCI_CONFIG}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
           "layers": [await push_blob(client, name, layer) for layer in layers], **extra}
    return await put_manifest(client, name, tag or sha256(json.dumps(doc).encode()), doc)


async def push_index(client: httpx.AsyncClient, name: str, tag: str, children: list[tuple[str, bytes, str]]
                     ) -> tuple[str, bytes]:
    """``children``: (digest, content, platform) of manifests pushed before."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(c),
         "platform": {"os": p.split("/")[0], "architecture": p.split("/")[1]}} for d, c, p in children]}
    return await put_manifest(client, name, tag, doc)


async def push_referrer(client: httpx.AsyncClient, name: str, subject: tuple[str, bytes], payload: bytes,
                        artifact_type: str = "application/vnd.example.signature") -> tuple[str, bytes]:
    empty = b"{}"
    config = {**await push_blob(client, name, empty), "mediaType": "application/vnd.oci.empty.v1+json"}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type, "config": config,
           "layers": [await push_blob(client, name, payload)],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": len(subject[1])}}
    content = json.dumps(doc).encode()
    return await put_manifest(client, name, sha256(content), doc)


async def manifest(client: httpx.AsyncClient, name: str, reference: str) -> tuple[int, str | None, bytes]:
    r = await client.get(f"/v2/{name}/manifests/{reference}", headers={"accept": ACCEPT})
    return r.status_code, r.headers.get("docker-content-digest"), r.content
