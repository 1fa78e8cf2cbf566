"""The registry app with an ``auth`` section, in process, for the auth tests that talk to it over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from auth.manage import Management
from auth.policy import policy_cache
from auth.terms import OPERATOR
from registry.config import parse
from registry.http.app import create_app


def app_client(tmp_path: Path, auth: dict[str, Any]) -> TestClient:
    """The app on filesystem storage below ``tmp_path`` with ``auth`` as its auth section."""
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "auth": auth}
    return TestClient(create_app(parse(raw)), base_url="http://registry.test")


def push_blob(client: TestClient, name: str, data: bytes, **kwargs: Any) -> tuple[httpx.Response, str]:
    """A monolithic blob upload (POST with ``digest``); returns the response and the blob's digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data, **kwargs), digest


def push_image(client: TestClient, name: str, **kwargs: Any) -> int:
    """A minimal OCI image (config blob + manifest tagged ``v1``); returns the manifest PUT status."""
    config = b'{"architecture":"amd64","os":"linux"}'
    r, digest = push_blob(client, name, config, **kwargs)
    assert r.status_code == 201, r.text
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                           "size": len(config)}, "layers": []}
    headers = {**kwargs.pop("headers", {}), "Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    return client.put(f"/v2/{name}/manifests/v1", content=json.dumps(manifest), headers=headers,
                      **kwargs).status_code


def add_namespace_owner(client: TestClient, user: tuple[str, str], namespace: str) -> None:
    """Create the database user ``user`` (name, password) and a namespace it owns, as the operator would."""
    registry = client.app.registry  # type: ignore[attr-defined]
    manage = Management(registry.database, policy_cache(registry.database))
    manage.cost = 4  # bcrypt's lowest cost: the tests log in often

    async def setup() -> None:
        await manage.create_user(OPERATOR, *user)
        await manage.create_namespace(OPERATOR, namespace)
        await manage.set_member(OPERATOR, namespace, "user", user[0], "owner")

    asyncio.run(setup())
