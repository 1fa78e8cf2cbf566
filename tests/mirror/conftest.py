"""Mirror tests: an upstream Moorage and the mirror, both real HTTP servers on loopback (ports 15500-15599).

``serve(app)`` runs an ASGI app under uvicorn in a thread; the upstream is wrapped in ``Recorder``,
which counts its requests and can fail them on demand (down, 429), so tests can assert how many
requests reached the upstream.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.config import parse
from registry.http.app import RegistryApp, create_app
from tests.e2e.helpers import free_port_in
from tests.inprocess import InProcessServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    """A free loopback port in the range these tests may use."""
    return free_port_in(range(15500, 15600))


class Recorder:
    """ASGI middleware: records (method, path) of every request; answers ``fail`` instead when set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.fail: int | None = None  # e.g. 503 or 429

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
            if self.fail is not None:
                await send({"type": "http.response.start", "status": self.fail, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and contains in p)

    def clear(self) -> None:
        self.requests.clear()


@dataclass
class Server(InProcessServer):
    """An ASGI app served by uvicorn in a thread, on a port of this suite's range."""

    port: int = field(default_factory=free_port)

    def another_port(self) -> int:
        return free_port()


def moorage(root: Path, **sections: Any) -> RegistryApp:
    return create_app(parse({"storage": {"filesystem": {"rootdirectory": str(root)}}, **sections}))


@pytest.fixture
def servers() -> Iterator[Callable[[ASGIApp], Server]]:
    started: list[Server] = []

    def start(app: ASGIApp) -> Server:
        server = Server(app).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@dataclass
class Served:
    """A registry app serving on loopback, with its storage root."""

    server: Server
    root: Path

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Upstream(Served):
    recorder: Recorder


@pytest.fixture
def upstream(servers: Callable[[ASGIApp], Server], tmp_path: Path) -> Upstream:
    """A second Moorage on loopback, recording the requests it gets."""
    recorder = Recorder(moorage(tmp_path / "upstream"))
    return Upstream(servers(recorder), tmp_path / "upstream", recorder)


@dataclass
class Mirror(Served):
    app: RegistryApp

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def settle(self, timeout: float = 10) -> None:
        """Wait until the blob downloads still being verified and stored are done."""
        mirror = self.app.registry.mirror
        assert mirror is not None
        deadline = time.monotonic() + timeout
        while mirror.downloads_in_flight:
            assert time.monotonic() < deadline, "downloads did not finish"
            time.sleep(0.01)


@pytest.fixture
def start_mirror(servers: Callable[[ASGIApp], Server], tmp_path: Path) -> Callable[..., Mirror]:
    """Start a Moorage whose ``proxy`` section is given."""
    count = 0

    def start(proxy: dict[str, Any], **sections: Any) -> Mirror:
        nonlocal count
        count += 1
        root = tmp_path / f"mirror-{count}"
        app = moorage(root, proxy=proxy, **sections)
        return Mirror(servers(app), root, app)

    return start


def push_blob(base: str, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = httpx.post(f"{base}/v2/{name}/blobs/uploads/?digest={digest}", content=data, timeout=60)
    assert r.status_code == 201, r.text
    return digest


def push_image(base: str, name: str, tag: str | None, layers: list[bytes], arch: str = "amd64") -> tuple[str, bytes]:
    """Push config, layers and an OCI manifest; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": push_blob(base, name, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": push_blob(base, name, layer), "size": len(layer)} for layer in layers],
    }
    body = json.dumps(doc).encode()
    digest = sha256(body)
    r = httpx.put(f"{base}/v2/{name}/manifests/{tag or digest}", content=body,
                  headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return digest, body


def push_index(base: str, name: str, tag: str, children: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    """Push an OCI index over already pushed manifests (arch -> (digest, bytes))."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(b),
                       "platform": {"os": "linux", "architecture": arch}} for arch, (d, b) in children.items()],
    }
    body = json.dumps(doc).encode()
    r = httpx.put(f"{base}/v2/{name}/manifests/{tag}", content=body, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    return sha256(body), body


def blob_file(root: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def pull(client: httpx.Client, name: str, reference: str) -> tuple[str, dict[str, bytes]]:
    """GET the manifest and every blob it names, as a client pull does; returns (digest, blobs)."""
    r = client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    doc = r.json()
    got = {}
    for desc in [doc["config"], *doc["layers"]]:
        b = client.get(f"/v2/{name}/blobs/{desc['digest']}")
        assert b.status_code == 200, b.text
        assert sha256(b.content) == desc["digest"]
        got[desc["digest"]] = b.content
    return r.headers["docker-content-digest"], got
