"""`docker search HOST:PORT/term` against `moorage serve`: plain, htpasswd and token auth.

The daemon calls ``/v1/search`` (after pinging ``/v1/_ping``); the answer comes from the catalog,
filtered by what the caller may pull. podman's search (``/v2/_catalog``) keeps working alongside.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.auth.e2e_support import SERVICE, USERS, auth_port, login, output, write_auth_files

from .clients import Docker, Podman
from .helpers import unique
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
MODES = ["plain", "htpasswd", "token"]


def push_tiny(reg: RegistryProcess, name: str, user: str | None) -> None:
    """A one-layer OCI image under ``name:1``, through the API with the owner's credentials."""
    headers: dict[str, str] = {}
    auth = (user, USERS[user]) if user else None
    with httpx.Client(base_url=reg.url, timeout=30) as http:
        if user and "token" in reg.config.get("auth", {}):
            r = http.get("/auth/token", params={"service": SERVICE, "scope": f"repository:{name}:pull,push"},
                         auth=auth)
            headers["Authorization"] = f"Bearer {r.json()['token']}"
            auth = None
        descriptors = []
        for blob in (b'{"architecture":"amd64","os":"linux"}', name.encode()):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            r = http.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=blob, headers=headers, auth=auth)
            assert r.status_code == 201, r.text
            descriptors.append({"digest": digest, "size": len(blob)})
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descriptors[0]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descriptors[1]}]}
        r = http.put(f"/v2/{name}/manifests/1", content=json.dumps(manifest), auth=auth,
                     headers={**headers, "Content-Type": manifest["mediaType"]})
        assert r.status_code == 201, r.text


def search(docker: Docker, reg: RegistryProcess, term: str) -> list[str]:
    p = docker("search", "--no-trunc", "--format", "{{.Name}}", f"{reg.host}/{term}", check=False)
    assert p.returncode == 0, output(p)
    return sorted(line.strip() for line in p.stdout.splitlines() if line.strip())


@pytest.mark.parametrize("mode", MODES)
def test_docker_search(mode: str, start_moorage: ServerFactory, docker: Docker, tmp_path: Path) -> None:
    files = write_auth_files(tmp_path / "auth")
    port = auth_port()
    config = {}
    if mode == "htpasswd":
        config = {"auth": files.basic()}
    elif mode == "token":
        config = {"auth": files.token(f"http://127.0.0.1:{port}/auth/token")}
    reg = start_moorage(config, port=port)
    word = unique("srch")
    owners = {f"alice/{word}-a": "alice", f"bob/{word}-b": "bob", f"public/{word}-p": "alice"}
    for name, owner in owners.items():
        push_tiny(reg, name, owner if mode != "plain" else None)
    push_tiny(reg, "public/unrelated", "alice" if mode != "plain" else None)

    if mode == "plain":
        assert search(docker, reg, word) == sorted(owners)
        return
    assert search(docker, reg, word) == [f"public/{word}-p"]  # anonymous: what the rules let anyone pull
    assert login(docker, reg.host, "bob", USERS["bob"]).returncode == 0
    assert search(docker, reg, word) == [f"bob/{word}-b", f"public/{word}-p"]
    assert login(docker, reg.host, "alice", USERS["alice"]).returncode == 0
    assert search(docker, reg, word) == [f"alice/{word}-a", f"public/{word}-p"]


def test_podman_search_still_uses_the_catalog(start_moorage: ServerFactory, podman: Podman) -> None:
    reg = start_moorage()
    name = f"team/{unique('pod')}"
    push_tiny(reg, name, None)
    p = podman("search", "--tls-verify=false", "--format", "{{.Name}}", f"{reg.host}/{name.split('/')[1]}")
    assert f"{reg.host}/{name}" in p.stdout, p.stdout + p.stderr
