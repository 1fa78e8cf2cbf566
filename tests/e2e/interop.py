"""What the interop tests write to one registry and check on another: images, an index, an artifact and
referrers, pushed through one server and verified through the other (on one directory or one bucket)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx

from .clients import Docker, Skopeo
from .helpers import sha256_digest, unique
from .images import DOCKER_MANIFEST, MANIFEST_ACCEPT, DockerArchive, ImageFactory, OciIndex
from .servers import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Written:
    """What the first server was given, and what it answered."""

    image: DockerArchive
    image_digest: str
    index: OciIndex
    manifests: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    catalog: list[str] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)


def manifest(c: object, repo: str, ref: str) -> tuple[int, str, bytes]:
    """(status, Docker-Content-Digest, body) of GET /v2/REPO/manifests/REF."""
    r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})  # type: ignore[attr-defined]
    return r.status_code, r.headers.get("Docker-Content-Digest", ""), r.content


def populate(
    server: RegistryProcess,
    docker: Docker,
    skopeo: Skopeo,
    images: ImageFactory,
    oras: ModuleType,
    tmp_path: Path,
) -> Written:
    """Push a docker image (two tags, two repositories), a multi-arch index and an oras artifact."""
    base = [images.layer(), images.layer()]
    img = images.docker_archive(f"e2e/{unique('interop')}:1", layers=[*base, images.layer()])
    docker.load(img.path)
    ref = server.ref("interop/app", "1.0")
    docker.tag(img.tag, ref)
    image_digest, _ = docker.push(ref)
    docker.tag(img.tag, server.ref("interop/app", "latest"))
    docker.push(server.ref("interop/app", "latest"))
    docker.tag(img.tag, server.ref("interop/mounted", "1.0"))
    docker.push(server.ref("interop/mounted", "1.0"))

    index = images.oci_index(platforms=("linux/amd64", "linux/arm64"), shared=base)
    skopeo.copy(index.ref, f"docker://{server.ref('interop/multi', 'v1')}", "--all", "--preserve-digests")

    note = tmp_path / "note.txt"
    note.write_text(f"written by {server.kind}\n")
    reg = oras.connect(server.host)
    oras.push(reg, f"{server.host}/interop/artifact:v1", [note], config_media_type="application/vnd.e2e.note")

    written = Written(image=img, image_digest=image_digest, index=index)
    with server.http() as c:
        written.catalog = sorted(c.get("/v2/_catalog").json()["repositories"])
        for repo in written.catalog:
            written.tags[repo] = sorted(c.get(f"/v2/{repo}/tags/list").json()["tags"])
            for tag in written.tags[repo]:
                status, digest, body = manifest(c, repo, tag)
                assert status == 200 and digest == sha256_digest(body)
                written.manifests[(repo, tag)] = digest
    assert written.catalog == ["interop/app", "interop/artifact", "interop/mounted", "interop/multi"]
    assert written.manifests[("interop/multi", "v1")] == index.digest
    return written


def verify(
    server: RegistryProcess,
    written: Written,
    docker: Docker,
    skopeo: Skopeo,
    oras: ModuleType,
    tmp_path: Path,
) -> None:
    """The second server serves exactly what the first one wrote."""
    with server.http() as c:
        assert sorted(c.get("/v2/_catalog").json()["repositories"]) == written.catalog
        for repo, tags in written.tags.items():
            r = c.get(f"/v2/{repo}/tags/list")
            assert r.status_code == 200, (repo, r.text)
            assert sorted(r.json()["tags"]) == tags
        for (repo, tag), digest in written.manifests.items():
            for ref in (tag, digest):
                status, got, body = manifest(c, repo, ref)
                assert (status, got) == (200, digest), f"GET /v2/{repo}/manifests/{ref}"
                assert sha256_digest(body) == digest
            doc = json.loads(body)
            children = [m["digest"] for m in doc.get("manifests", [])]
            blobs = [doc["config"], *doc["layers"]] if "config" in doc else []
            for child in children:
                status, got, _ = manifest(c, repo, child)
                assert (status, got) == (200, child), f"GET /v2/{repo}/manifests/{child} (index child)"
            for desc in blobs:
                b = c.get(f"/v2/{repo}/blobs/{desc['digest']}")
                assert b.status_code == 200, f"GET /v2/{repo}/blobs/{desc['digest']}: {b.status_code}"
                assert sha256_digest(b.content) == desc["digest"]

    # docker: by tag, by digest, by platform, from an empty local store
    ref = server.ref("interop/app", "1.0")
    docker.rmi(ref)
    docker.pull(ref)
    assert docker.repo_digest(ref) == written.image_digest
    assert docker.inspect(ref)["Id"] == written.image.image_id
    by_digest = server.ref("interop/mounted", written.image_digest)
    docker.pull(by_digest)
    assert docker.inspect(by_digest)["Id"] == written.image.image_id
    multi = server.ref("interop/multi", "v1")
    for platform, arch in (("linux/arm64", "arm64"), ("linux/amd64", "amd64")):
        docker.rmi(multi)
        docker.pull(multi, platform=platform)
        info = docker.inspect(multi)
        assert info["Architecture"] == arch
        assert info["Id"] == written.index.configs[platform]
    docker.rmi(multi)

    # skopeo: the whole index, digests preserved
    out = tmp_path / f"copy-from-{server.kind}"
    skopeo.copy(f"docker://{multi}", f"oci:{out}:v1", "--all", "--preserve-digests")
    top = json.loads((out / "index.json").read_text())
    assert top["manifests"][0]["digest"] == written.index.digest

    # oras: the artifact's file
    pulled = tmp_path / f"oras-from-{server.kind}"
    oras.pull(oras.connect(server.host), f"{server.host}/interop/artifact:v1", pulled)
    assert (pulled / "note.txt").read_text().startswith("written by ")


def push_referrer(c: httpx.Client, repo: str, subject_digest: str, subject: bytes) -> str:
    """An OCI artifact manifest whose ``subject`` is the given manifest; returns its digest."""
    empty = b"{}"
    note = f"note {uuid.uuid4()}".encode()
    for blob in (empty, note):
        r = c.post(f"/v2/{repo}/blobs/uploads/?digest={sha256_digest(blob)}", content=blob)
        assert r.status_code == 201, r.text
    doc = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.e2e.note",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(empty), "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": sha256_digest(note), "size": len(note)}],
            "subject": {"mediaType": DOCKER_MANIFEST, "digest": subject_digest, "size": len(subject)},
        }
    ).encode()
    digest = sha256_digest(doc)
    r = c.put(f"/v2/{repo}/manifests/{digest}", content=doc, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return digest
