"""skopeo copy both ways; podman push, pull, search (catalog) and tag listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .clients import Podman, Skopeo
from .helpers import file_digest, sha256_digest
from .images import ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e


def test_skopeo_copy_both_ways(registry: RegistryProcess, skopeo: Skopeo, images: ImageFactory, tmp_path: Path) -> None:
    """docker-archive -> registry -> dir: (byte-identical manifest and blobs) -> registry again."""
    img = images.docker_archive("e2e/skopeo:1", platform="linux/arm64")
    src = f"docker://{registry.ref('sk/app', '1')}"
    skopeo.copy(f"docker-archive:{img.path}", src)
    raw = skopeo.raw(src)
    digest = sha256_digest(raw)
    info = skopeo.inspect(src)
    assert info["Digest"] == digest
    assert info["Architecture"] == "arm64"

    out = tmp_path / "copied"
    skopeo.copy(src, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == raw
    manifest = json.loads(raw)
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = out / desc["digest"].split(":", 1)[1]
        assert file_digest(blob) == desc["digest"]
        assert blob.stat().st_size == desc["size"]

    again = f"docker://{registry.ref('sk/app', 'again')}"
    skopeo.copy(f"dir:{out}", again, "--preserve-digests")
    assert sha256_digest(skopeo.raw(again)) == digest

    other = f"docker://{registry.ref('sk/other', '1')}"
    skopeo.copy(src, other)
    assert sha256_digest(skopeo.raw(other)) == digest

    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{registry.ref('sk/app')}").stdout)
    assert sorted(tags["Tags"]) == ["1", "again"]


def test_podman_push_pull_search(registry: RegistryProcess, podman: Podman, images: ImageFactory) -> None:
    """podman push and pull (same digest and image), `podman search` (catalog) and --list-tags."""
    img = images.docker_archive("e2e/podman:1")
    podman("load", "-i", str(img.path))
    image_id = img.image_id.split(":", 1)[1]
    ref = registry.ref("pod/app", "1")
    podman("tag", image_id, ref)
    digest_file = podman.workdir / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digest_file), ref)
    pushed = digest_file.read_text().strip()

    podman("rmi", "--all", "--force")
    podman("pull", "--tls-verify=false", ref)
    listed = json.loads(podman("images", "--format", "json").stdout)
    assert [i["Id"] for i in listed] == [image_id]
    assert listed[0]["Digest"] == pushed

    ref2 = registry.ref("pod/second", "x")
    podman("tag", image_id, ref2)
    podman("push", "--tls-verify=false", ref2)

    found = podman("search", "--tls-verify=false", "--format", "{{.Name}}", f"{registry.host}/").stdout.split()
    assert {f"{registry.host}/pod/app", f"{registry.host}/pod/second"} <= set(found), found
    repo2 = ref2.rsplit(":", 1)[0]
    listed_tags = podman("search", "--tls-verify=false", "--list-tags", "--format", "json", repo2).stdout
    assert json.loads(listed_tags) == [{"Name": repo2, "Tags": ["x"]}]

    with registry.http() as c:
        assert sorted(c.get("/v2/_catalog").json()["repositories"]) == ["pod/app", "pod/second"]
