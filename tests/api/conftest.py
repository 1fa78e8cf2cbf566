"""API tests: the ASGI app through httpx (Starlette's TestClient), on a temporary filesystem root."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from registry.config import parse
from registry.http.app import create_app

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_client(root: Path, **overrides: Any) -> TestClient:
    raw: dict[str, Any] = {"storage": {"filesystem": {"rootdirectory": str(root)}}}
    for key, value in overrides.items():
        raw[key] = value
    return TestClient(create_app(parse(raw)), base_url="http://registry.test")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "root") as c:
        yield c


def push_blob(client: TestClient, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(
    client: TestClient,
    name: str,
    layers: list[bytes] | None = None,
    media_type: str = OCI_MANIFEST,
    config: bytes = b'{"architecture":"amd64","os":"linux"}',
    **extra: Any,
) -> bytes:
    """Push the config and layers and return a manifest document referencing them."""
    layers = layers if layers is not None else [b"layer-one"]
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )
    layer_type = (
        "application/vnd.oci.image.layer.v1.tar+gzip"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": push_blob(client, name, config), "size": len(config)},
        "layers": [
            {"mediaType": layer_type, "digest": push_blob(client, name, layer), "size": len(layer)}
            for layer in layers
        ],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def put_manifest(client: TestClient, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST):
    return client.put(f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type})
