"""Interop with CNCF Distribution 2.8.2 on ONE data directory, in both directions.

One server writes (docker push, a second image sharing layers in another repository, a multi-arch OCI
index by skopeo, an oras artifact), stops, and the other serves the same `rootdirectory`: every tag
and digest, the catalog, every blob, docker pulls by tag/digest/platform and a skopeo copy of the
whole index must come out the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from .clients import Docker, Skopeo
from .helpers import sha256_digest, unique
from .images import MANIFEST_ACCEPT, DockerArchive, ImageFactory, OciIndex
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e


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


@pytest.fixture
def shared_root(tmp_path: Path) -> Path:
    """The one data directory both servers use."""
    root = tmp_path / "shared-root"
    root.mkdir()
    return root


@pytest.mark.parametrize("writer", ["distribution", "moorage"])
def test_one_writes_the_other_serves(
    writer: str,
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    shared_root: Path,
    docker: Docker,
    skopeo: Skopeo,
    images: ImageFactory,
    oras: ModuleType,
    tmp_path: Path,
) -> None:
    """Push to one server, stop it, serve its root directory with the other, pull everything."""
    first, second = (start_distribution, start_moorage) if writer == "distribution" else (start_moorage,
                                                                                          start_distribution)
    server = first(root=shared_root)
    written = populate(server, docker, skopeo, images, oras, tmp_path)
    server.stop()
    verify(second(root=shared_root), written, docker, skopeo, oras, tmp_path)


def test_moorage_sees_what_distribution_added_later(
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    shared_root: Path,
    skopeo: Skopeo,
    images: ImageFactory,
) -> None:
    """Moorage, then Distribution adds and deletes on the same root, then Moorage again: no stale tags/catalog."""
    moorage = start_moorage(root=shared_root)
    first = images.docker_archive(f"e2e/{unique('later')}:1")
    skopeo.copy(f"docker-archive:{first.path}", f"docker://{moorage.ref('later/app', '1')}")
    skopeo.copy(f"docker-archive:{first.path}", f"docker://{moorage.ref('later/gone', '1')}")
    with moorage.http() as c:  # let Moorage build whatever it caches
        assert sorted(c.get("/v2/_catalog").json()["repositories"]) == ["later/app", "later/gone"]
        assert c.get("/v2/later/app/tags/list").json()["tags"] == ["1"]
    moorage.stop()

    dist = start_distribution(root=shared_root)
    second = images.docker_archive(f"e2e/{unique('later')}:2")
    skopeo.copy(f"docker-archive:{second.path}", f"docker://{dist.ref('later/app', '2')}")
    skopeo.copy(f"docker-archive:{second.path}", f"docker://{dist.ref('later/new', '1')}")
    with dist.http() as c:
        _, gone_digest, _ = manifest(c, "later/gone", "1")
        assert c.delete(f"/v2/later/gone/manifests/{gone_digest}").status_code == 202
    dist.stop()

    moorage.start()
    with moorage.http() as c:
        assert sorted(c.get("/v2/later/app/tags/list").json()["tags"]) == ["1", "2"]
        assert manifest(c, "later/app", "2")[0] == 200
        assert manifest(c, "later/gone", gone_digest)[0] == 404
        assert manifest(c, "later/gone", "1")[0] == 404
        assert c.get("/v2/later/new/tags/list").json()["tags"] == ["1"]
        catalog = c.get("/v2/_catalog").json()["repositories"]
        # Distribution keeps an emptied repository directory; its catalog still lists later/gone
        assert {"later/app", "later/new"} <= set(catalog), catalog


def test_moorage_referrers_after_distribution_wrote(
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    shared_root: Path,
    skopeo: Skopeo,
    images: ImageFactory,
    oras: ModuleType,
    tmp_path: Path,
) -> None:
    """Referrers stay derived data: a referrer Distribution deleted is gone, one it stored is listed.

    Distribution 2.8.2 stores an OCI manifest with a `subject` as is (it knows nothing of referrers).
    """
    moorage = start_moorage(root=shared_root)
    img = images.docker_archive(f"e2e/{unique('refs')}:1")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{moorage.ref('refs/app', '1')}")
    note = tmp_path / "note.txt"
    note.write_text("referrer\n")
    reg = oras.connect(moorage.host)
    subject = oras.subject_of(reg, moorage.ref("refs/app", "1"))
    old = oras.push(
        reg, f"{moorage.host}/refs/app:old", [note], config_media_type="application/vnd.e2e.old", subject=subject
    )
    with moorage.http() as c:
        listed = c.get(f"/v2/refs/app/referrers/{subject.digest}").json()["manifests"]
        assert [m["digest"] for m in listed] == [old.digest]
    moorage.stop()

    dist = start_distribution(root=shared_root)
    with dist.http() as c:
        assert c.delete(f"/v2/refs/app/manifests/{old.digest}").status_code == 202
    new = oras.push(
        oras.connect(dist.host),
        f"{dist.host}/refs/app:new",
        [note],
        config_media_type="application/vnd.e2e.new",
        subject=subject,
    )
    dist.stop()

    moorage.start()
    with moorage.http() as c:
        r = c.get(f"/v2/refs/app/referrers/{subject.digest}")
        assert r.status_code == 200, r.text
        assert [m["digest"] for m in r.json()["manifests"]] == [new.digest], (
            f"referrers of {subject.digest}: expected only {new.digest} (stored by Distribution), "
            f"{old.digest} was deleted by Distribution"
        )
