"""Deleting through the HTTP API (httpx) after real pushes, then what clients see."""

from __future__ import annotations

import json

import pytest

from .clients import Docker, Skopeo
from .images import MANIFEST_ACCEPT, ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e


def push_two(registry: RegistryProcess, skopeo: Skopeo, images: ImageFactory) -> tuple[str, str, dict]:
    """Push image X as del/app:1 and :2 and image Y (sharing two layers) as del/app:3."""
    base = [images.layer(), images.layer()]
    x = images.docker_archive("e2e/del-x:1", layers=base)
    y = images.docker_archive("e2e/del-y:1", layers=base)
    for tag in ("1", "2"):
        skopeo.copy(f"docker-archive:{x.path}", f"docker://{registry.ref('del/app', tag)}")
    skopeo.copy(f"docker-archive:{y.path}", f"docker://{registry.ref('del/app', '3')}")
    with registry.http() as c:
        rx = c.get("/v2/del/app/manifests/1", headers={"Accept": MANIFEST_ACCEPT})
        ry = c.get("/v2/del/app/manifests/3", headers={"Accept": MANIFEST_ACCEPT})
    return rx.headers["Docker-Content-Digest"], ry.headers["Docker-Content-Digest"], json.loads(rx.content)


def test_delete_by_tag_removes_only_the_tag(
    registry: RegistryProcess, moorage_only: None, skopeo: Skopeo, images: ImageFactory
) -> None:
    """DELETE manifests/<tag>: 202, that tag 404s, the manifest and its other tags stay."""
    dx, _, _ = push_two(registry, skopeo, images)
    with registry.http(headers={"Accept": MANIFEST_ACCEPT}) as c:
        r = c.delete("/v2/del/app/manifests/1")
        assert r.status_code == 202, r.text
        gone = c.get("/v2/del/app/manifests/1")
        assert gone.status_code == 404
        assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert c.get("/v2/del/app/manifests/2").headers["Docker-Content-Digest"] == dx
        assert c.get(f"/v2/del/app/manifests/{dx}").status_code == 200
        assert sorted(c.get("/v2/del/app/tags/list").json()["tags"]) == ["2", "3"]
        assert c.delete("/v2/del/app/manifests/1").status_code == 404


def test_delete_by_digest_and_blob_then_404s(
    registry: RegistryProcess, skopeo: Skopeo, docker: Docker, images: ImageFactory
) -> None:
    """DELETE manifests/<digest> (202) removes it and its tags; a blob DELETE; the other image still pulls."""
    dx, dy, man_x = push_two(registry, skopeo, images)
    own_layer = man_x["layers"][-1]["digest"]  # the layer only X has
    with registry.http(headers={"Accept": MANIFEST_ACCEPT}) as c:
        r = c.delete(f"/v2/del/app/manifests/{dx}")
        assert r.status_code == 202, r.text
        for ref in (dx, "1", "2"):
            g = c.get(f"/v2/del/app/manifests/{ref}")
            assert g.status_code == 404, (ref, g.status_code, g.text)
            assert g.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
            assert c.head(f"/v2/del/app/manifests/{ref}").status_code == 404
        assert c.delete(f"/v2/del/app/manifests/{dx}").status_code == 404
        assert c.get("/v2/del/app/tags/list").json()["tags"] == ["3"]

        assert c.head(f"/v2/del/app/blobs/{own_layer}").status_code == 200
        assert c.delete(f"/v2/del/app/blobs/{own_layer}").status_code == 202
        assert c.head(f"/v2/del/app/blobs/{own_layer}").status_code == 404
        g = c.get(f"/v2/del/app/blobs/{own_layer}")
        assert g.status_code == 404 and g.json()["errors"][0]["code"] == "BLOB_UNKNOWN"

    failed = docker("pull", registry.ref("del/app", "2"), check=False)
    assert failed.returncode != 0
    assert "not found" in (failed.stderr + failed.stdout).lower() or "unknown" in failed.stderr.lower()
    docker.pull(registry.ref("del/app", "3"))
    assert docker.repo_digest(registry.ref("del/app", "3")) == dy
