"""Web UI tests through httpx against the ASGI app: seeded repositories, auth set-ups, form tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests.api.conftest import OCI_INDEX, OCI_MANIFEST, image_manifest, push_blob, put_manifest, sha256
from tests.auth.conftest import bcrypt_line

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
RULES: dict[str, Any] = {
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["public/**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ],
}
SCRIPT = "<script>alert(1)</script>"


def write_htpasswd(directory: Path) -> Path:
    path = directory / "htpasswd"
    path.write_text("".join(bcrypt_line(u, p) + "\n" for u, p in PASSWORDS.items()))
    return path


def basic_auth(directory: Path) -> dict[str, Any]:
    return {"htpasswd": {"realm": "ui-test", "path": str(write_htpasswd(directory))}, "access": RULES}


def image_config(arch: str = "amd64", variant: str | None = None, labels: dict[str, str] | None = None) -> bytes:
    config: dict[str, Any] = {
        "architecture": arch, "os": "linux", "created": "2024-05-01T10:00:00Z",
        "config": {"Entrypoint": ["/usr/bin/app"], "Cmd": ["--serve"], "Env": ["APP_ENV=production"],
                   "Labels": labels or {"org.opencontainers.image.title": "app"}},
        "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "RUN make install"}],
    }
    if variant:
        config["variant"] = variant
    return json.dumps(config).encode()


def push_image(client: TestClient, name: str, tag: str, arch: str = "amd64", variant: str | None = None,
               labels: dict[str, str] | None = None, layers: list[bytes] | None = None,
               **extra: Any) -> tuple[str, bytes]:
    """An OCI image under ``tag`` (by digest when ``tag`` is empty); its digest and manifest."""
    body = image_manifest(client, name, layers=layers or [f"{name}-{arch}".encode() * 100],
                          config=image_config(arch, variant, labels), **extra)
    r = put_manifest(client, name, tag or sha256(body), body)
    assert r.status_code == 201, r.text
    return sha256(body), body


def push_index(client: TestClient, name: str, tag: str) -> tuple[str, list[str]]:
    """A two-platform index (linux/amd64, linux/arm64/v8) under ``tag``; its digest and the children's."""
    children = [push_image(client, name, "", arch, variant) for arch, variant in (("amd64", None), ("arm64", "v8"))]
    platforms = [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"}]
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(b), "platform": p}
        for (d, b), p in zip(children, platforms, strict=True)]}
    body = json.dumps(doc).encode()
    r = put_manifest(client, name, tag, body, OCI_INDEX)
    assert r.status_code == 201, r.text
    return sha256(body), [d for d, _ in children]


def push_referrer(client: TestClient, name: str, subject: str, subject_type: str, size: int,
                  artifact_type: str, annotations: dict[str, str] | None = None) -> str:
    empty = push_blob(client, name, b"{}")
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": push_blob(client, name, artifact_type.encode()),
                    "size": len(artifact_type)}],
        "subject": {"mediaType": subject_type, "digest": subject, "size": size},
    }
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    assert put_manifest(client, name, sha256(body), body).status_code == 201
    return sha256(body)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, user: str, password: str | None = None) -> Any:
    page = client.get("/ui/login")
    return client.post("/ui/login", data={"username": user, "password": password or PASSWORDS[user],
                                          "csrf": csrf(page.text), "next": "/ui/"}, follow_redirects=False)

