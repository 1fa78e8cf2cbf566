"""Multi-platform images: an OCI index pushed by skopeo or podman, docker pulls the right platform."""

from __future__ import annotations

import json

import pytest

from .clients import Docker, Podman, Skopeo
from .helpers import sha256_digest
from .images import MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST, PLATFORM_LABEL, ImageFactory, OciIndex
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def check_platform_pulls(docker: Docker, ref: str, index: OciIndex, platforms: dict[str, str]) -> None:
    """docker pull --platform P of `ref` gives the image built for P (architecture, label, config)."""
    for platform, arch in platforms.items():
        docker.rmi(ref)
        docker.pull(ref, platform=platform)
        info = docker.inspect(ref)
        assert info["Architecture"] == arch, (platform, info["Architecture"])
        assert info["Config"]["Labels"][PLATFORM_LABEL] == platform
        assert info["Id"] == index.configs[platform]
    docker.rmi(ref)


def test_skopeo_push_index_docker_pulls_each_platform(
    registry: RegistryProcess, skopeo: Skopeo, docker: Docker, images: ImageFactory
) -> None:
    """`skopeo copy --all --preserve-digests` of an OCI index; docker pulls arm64, amd64, arm/v7."""
    index = images.oci_index(platforms=PLATFORMS)
    ref = registry.ref("multi/app", "1.0")
    skopeo.copy(index.ref, f"docker://{ref}", "--all", "--preserve-digests")

    assert sha256_digest(skopeo.raw(f"docker://{ref}")) == index.digest
    with registry.http() as c:
        r = c.get("/v2/multi/app/manifests/1.0", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == index.digest
        assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
        listed = {m["digest"] for m in r.json()["manifests"]}
        assert listed == set(index.manifests.values())
        for digest in index.manifests.values():
            m = c.get(f"/v2/multi/app/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT})
            assert m.status_code == 200 and sha256_digest(m.content) == digest
            assert m.headers["Content-Type"].split(";")[0] == OCI_MANIFEST

    check_platform_pulls(docker, ref, index, {"linux/arm64": "arm64", "linux/amd64": "amd64", "linux/arm/v7": "arm"})
    by_digest = registry.ref("multi/app", index.digest)
    docker.pull(by_digest, platform="linux/arm64")
    assert docker.inspect(by_digest)["Architecture"] == "arm64"
    assert docker.repo_digest(by_digest) == index.digest


def test_podman_manifest_push_docker_pulls_each_platform(
    registry: RegistryProcess, podman: Podman, docker: Docker, images: ImageFactory
) -> None:
    """`podman manifest push --all` of a list built from an OCI layout; docker pulls both platforms."""
    index = images.oci_index(platforms=("linux/amd64", "linux/arm64"))
    podman("manifest", "create", "e2e-list")
    podman("manifest", "add", "--all", "e2e-list", index.ref)
    ref = registry.ref("multi/podman", "v1")
    digest_file = podman.workdir / "digest"
    podman(
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--digestfile",
        str(digest_file),
        "e2e-list",
        f"docker://{ref}",
    )
    pushed = digest_file.read_text().strip()

    with registry.http() as c:
        r = c.get("/v2/multi/podman/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == pushed == sha256_digest(r.content)
        body = json.loads(r.content)
        plats = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in body["manifests"]}
        assert plats == {"linux/amd64", "linux/arm64"}

    check_platform_pulls(docker, ref, index, {"linux/arm64": "arm64", "linux/amd64": "amd64"})
