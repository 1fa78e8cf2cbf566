"""Garbage collection with real docker, and with Distribution 2.8.2 on the same root in both directions.

Several images share layers across repositories; some tags and manifests are deleted; after GC every
kept image pulls with its digest, the deleted ones' own layers are gone from disk, and the other
registry still serves what the first one's GC kept.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from .clients import Docker, Skopeo
from .helpers import run, sha256_digest
from .images import MANIFEST_ACCEPT, ImageFactory
from .servers import RegistryProcess, ServerFactory, distribution_config, distribution_executable

pytestmark = pytest.mark.e2e
GC_CONFIG = {"storage": {"maintenance": {"gc": {"grace": "0s"}}}}
CUTOFF_WAIT = 2.2  # the cut-off is one second before the run (S3 timestamps): let the deletes age


@dataclass
class Pushed:
    kept: dict[str, str] = field(default_factory=dict)  # ref (repo:tag) -> manifest digest
    deleted: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, dict[str, int]] = field(default_factory=dict)  # ref -> {config and layer digest: size}

    def own(self, ref: str) -> dict[str, int]:
        """The blobs of ``ref`` that no other image has."""
        others = {d for other, blobs in self.blobs.items() if other != ref for d in blobs}
        return {d: size for d, size in self.blobs[ref].items() if d not in others}


def blob_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "docker/registry/v2/blobs").rglob("data"))


def has_blob(root: Path, digest: str) -> bool:
    hex_ = digest.split(":", 1)[1]
    return (root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data").exists()


def push_images(server: RegistryProcess, docker: Docker, skopeo: Skopeo, images: ImageFactory) -> Pushed:
    """Three images sharing two layers in two repositories, a multi-arch index; then delete two."""
    shared = [images.random_layer(200_000), images.layer()]
    pushed = Pushed()
    specs = {
        "gc/app:1": [*shared, images.random_layer(100_000)],
        "gc/app:2": [*shared, images.random_layer(150_000)],
        "gc/other:1": [shared[0], images.random_layer(120_000)],
        "gc/other:old": [images.random_layer(300_000)],
    }
    for ref, layers in specs.items():
        archive = images.docker_archive(f"e2e/{ref.replace(':', '-')}:x", layers=layers)
        docker.load(archive.path)
        target = server.ref(*ref.split(":"))
        docker.tag(archive.tag, target)
        pushed.kept[ref], _ = docker.push(target)
    index = images.oci_index(platforms=("linux/amd64", "linux/arm64"), shared=shared)
    skopeo.copy(index.ref, f"docker://{server.ref('gc/multi', 'v1')}", "--all", "--preserve-digests")
    pushed.kept["gc/multi:v1"] = index.digest
    with server.http() as c:
        for ref in specs:
            repo, tag = ref.split(":")
            doc = c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}).json()
            pushed.blobs[ref] = {b["digest"]: b["size"] for b in [doc["config"], *doc["layers"]]}
        for ref in ("gc/app:2", "gc/other:old"):  # delete the manifests (the tags go with them)
            repo, _ = ref.split(":")
            assert c.delete(f"/v2/{repo}/manifests/{pushed.kept[ref]}").status_code == 202
            pushed.deleted[ref] = pushed.kept.pop(ref)
    return pushed


def verify_kept(server: RegistryProcess, pushed: Pushed, docker: Docker) -> None:
    """Every kept manifest and blob answers with the right digest; docker pulls each image by tag."""
    with server.http() as c:
        for ref, digest in pushed.kept.items():
            repo, tag = ref.split(":")
            r = c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
            assert r.status_code == 200 and sha256_digest(r.content) == digest, (server.kind, ref, r.status_code)
            doc = r.json()
            for child in doc.get("manifests", []):
                m = c.get(f"/v2/{repo}/manifests/{child['digest']}", headers={"Accept": MANIFEST_ACCEPT})
                assert m.status_code == 200 and sha256_digest(m.content) == child["digest"]
                doc.setdefault("layers", []).extend([m.json()["config"], *m.json()["layers"]])
            for blob in [doc["config"], *doc["layers"]] if "config" in doc else doc["layers"]:
                b = c.get(f"/v2/{repo}/blobs/{blob['digest']}", follow_redirects=True)
                assert b.status_code == 200 and sha256_digest(b.content) == blob["digest"], (server.kind, ref, blob)
        for ref, digest in pushed.deleted.items():
            repo, _ = ref.split(":")
            assert c.get(f"/v2/{repo}/manifests/{digest}").status_code == 404
    for ref, digest in pushed.kept.items():
        if ref.startswith("gc/multi"):
            continue
        target = server.ref(*ref.split(":"))
        docker.rmi(target)
        docker.pull(target)
        assert docker.repo_digest(target) == digest


def moorage_gc(server: RegistryProcess, *args: str) -> str:
    p = run([server.executable, "gc", str(server.config_path), *args], timeout=300)
    return p.stdout


def test_gc_with_docker_then_distribution_serves_the_root(
    start_moorage: ServerFactory, start_distribution: ServerFactory, docker: Docker, skopeo: Skopeo,
    images: ImageFactory,
) -> None:
    server = start_moorage(GC_CONFIG)
    pushed = push_images(server, docker, skopeo, images)
    time.sleep(CUTOFF_WAIT)
    before = blob_bytes(server.root)
    dry = moorage_gc(server, "--dry-run")
    assert "dry run:" in dry and blob_bytes(server.root) == before
    out = moorage_gc(server)  # online: the registry keeps serving
    print(out)
    freed = before - blob_bytes(server.root)
    m = re.search(r"blobs: \d+ kept( \([^)]*\))?, (\d+) removed", out)  # kept bytes: not read on local disk
    assert m and int(m.group(2)) >= 5  # 2 manifests, a config and 2 layers at least
    own = sum(size for ref in pushed.deleted for size in pushed.own(ref).values())
    assert freed >= own > 400_000, (freed, own)
    for ref in pushed.deleted:
        for digest in pushed.own(ref):
            assert not has_blob(server.root, digest)
    verify_kept(server, pushed, docker)

    server.stop()  # Distribution 2.8.2 serves what Moorage's GC kept
    verify_kept(start_distribution(root=server.root), pushed, docker)


def test_distribution_garbage_collect_on_a_moorage_root(
    start_moorage: ServerFactory, docker: Docker, skopeo: Skopeo, images: ImageFactory, tmp_path: Path,
) -> None:
    server = start_moorage(GC_CONFIG)
    pushed = push_images(server, docker, skopeo, images)
    with server.http() as c:  # Moorage's own objects are on the root: a lastused, the referrers index
        layer = next(iter(pushed.own("gc/app:1")))
        assert c.head(f"/v2/gc/app/blobs/{layer}").status_code == 200
        assert c.get(f"/v2/gc/multi/referrers/{pushed.kept['gc/multi:v1']}").status_code == 200
    server.stop()
    executable = distribution_executable()
    assert executable is not None
    config = tmp_path / "distribution-gc.yml"
    config.write_text(yaml.safe_dump(distribution_config(5000, server.root)))
    p = subprocess.run([executable, "garbage-collect", str(config)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for ref in pushed.deleted:
        for gone in pushed.own(ref):
            assert not has_blob(server.root, gone)
    server.start()
    verify_kept(server, pushed, docker)
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/v2/gc/app/tags/list").json()["tags"] == ["1"]
