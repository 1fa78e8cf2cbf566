"""buildah builds and pushes (OCI and Docker formats); an upload that spans a server restart."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from .clients import Buildah, Docker
from .helpers import sha256_digest
from .images import DOCKER_MANIFEST, MANIFEST_ACCEPT, OCI_MANIFEST
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


@pytest.mark.parametrize(("fmt", "media_type"), [("oci", OCI_MANIFEST), ("v2s2", DOCKER_MANIFEST)])
def test_buildah_push_formats_docker_pulls(
    registry: RegistryProcess, buildah: Buildah, docker: Docker, tmp_path: Path, fmt: str, media_type: str
) -> None:
    """An image built from scratch by buildah, pushed as OCI or Docker schema 2; docker pulls it."""
    payload = tmp_path / "payload.txt"
    payload.write_text(f"built by buildah as {fmt} {os.urandom(8).hex()}\n")
    ctr = buildah("from", "scratch").stdout.strip()
    buildah("copy", ctr, str(payload), "/payload.txt")
    buildah("config", "--label", f"org.example.format={fmt}", ctr)
    buildah("commit", "-q", ctr, f"e2e-buildah-{fmt}")
    ref = registry.ref("buildah/app", fmt)
    digest_file = buildah.workdir / "digest"
    buildah(
        "push",
        "--tls-verify=false",
        "--format",
        fmt,
        "--digestfile",
        str(digest_file),
        f"e2e-buildah-{fmt}",
        f"docker://{ref}",
    )
    pushed = digest_file.read_text().strip()

    with registry.http() as c:
        r = c.get(f"/v2/buildah/app/manifests/{fmt}", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].split(";")[0] == media_type
        assert r.headers["Docker-Content-Digest"] == pushed == sha256_digest(r.content)

    docker.pull(ref)
    assert docker.repo_digest(ref) == pushed
    assert docker.inspect(ref)["Config"]["Labels"]["org.example.format"] == fmt


def test_upload_survives_server_restart(start_registry: ServerFactory) -> None:
    """POST, PATCH, restart the server, status GET, PATCH, PUT ?digest=: the blob is whole."""
    server = start_registry()
    data = os.urandom(3 * MB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.http() as c:
        r = c.post("/v2/restart/app/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        r = c.patch(
            location,
            content=data[:MB],
            headers={"Content-Range": f"0-{MB - 1}", "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 202, r.text
        location = r.headers["Location"]

    server.restart()

    with server.http() as c:
        st = c.get(location)
        assert st.status_code == 204, st.text
        assert st.headers["Range"] == f"0-{MB - 1}"
        r = c.patch(
            location,
            content=data[MB:],
            headers={"Content-Range": f"{MB}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = c.put(f"{location}{sep}digest={digest}")
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
        got = c.get(f"/v2/restart/app/blobs/{digest}")
        assert got.status_code == 200 and got.content == data
