"""docker push/pull through the real docker daemon against a `moorage serve` process."""

from __future__ import annotations

import pytest

from .clients import Docker
from .images import DOCKER_MANIFEST, ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def test_push_multilayer_then_pull_by_tag_and_digest(
    registry: RegistryProcess, docker: Docker, images: ImageFactory
) -> None:
    """A 4-layer image pushed, deleted locally, pulled by tag and by digest: same digest, same image."""
    img = images.docker_archive("e2e/multilayer:1", layers=[images.layer(), images.layer(), images.layer()])
    docker.load(img.path)
    ref = registry.ref("team/app", "1.0")
    docker.tag(img.tag, ref)

    digest, out = docker.push(ref)
    assert out.count("Pushed") >= 4, out

    with registry.http() as c:
        r = c.get(f"/v2/team/app/manifests/{digest}", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == digest
        assert len(r.json()["layers"]) == 4
        assert c.get("/v2/team/app/tags/list").json()["tags"] == ["1.0"]

    docker.rmi(ref, img.tag)
    assert not docker.exists(ref)

    out = docker.pull(ref)
    assert out.count("Pull complete") == 4, out
    assert docker.repo_digest(ref) == digest
    assert docker.inspect(ref)["Id"] == img.image_id

    docker.rmi(ref)
    by_digest = registry.ref("team/app", digest)
    out = docker.pull(by_digest)
    assert out.count("Pull complete") == 4, out
    assert docker.inspect(by_digest)["Id"] == img.image_id
    assert docker.repo_digest(by_digest) == digest


def test_push_sharing_layers_exists_and_mount(registry: RegistryProcess, docker: Docker, images: ImageFactory) -> None:
    """Shared layers: "Layer already exists" in the same repository, "Mounted from" across repositories."""
    base = [images.layer(), images.layer(), images.layer()]
    first = images.docker_archive("e2e/shared-a:1", layers=base)
    second = images.docker_archive("e2e/shared-b:1", layers=base)
    docker.load(first.path)
    docker.load(second.path)

    ref_a = registry.ref("team/base", "a")
    docker.tag(first.tag, ref_a)
    digest_a, _ = docker.push(ref_a)

    ref_b = registry.ref("team/base", "b")
    docker.tag(second.tag, ref_b)
    digest_b, out_b = docker.push(ref_b)
    assert out_b.count("Layer already exists") >= 3, out_b

    ref_c = registry.ref("team/derived", "1")
    docker.tag(second.tag, ref_c)
    digest_c, out_c = docker.push(ref_c)
    assert "Mounted from team/base" in out_c, out_c
    assert "Pushed" not in out_c, out_c
    assert digest_c == digest_b

    with registry.http() as c:
        assert sorted(c.get("/v2/team/base/tags/list").json()["tags"]) == ["a", "b"]
        repos = c.get("/v2/_catalog").json()["repositories"]
        assert sorted(repos) == ["team/base", "team/derived"]

    # every tag of the repository (docker pull -a), from an empty local store
    docker.rmi(ref_a, ref_b, ref_c, first.tag, second.tag)
    out = docker.pull_all(registry.ref("team/base"))
    assert docker.repo_digest(ref_a) == digest_a, out
    assert docker.repo_digest(ref_b) == digest_b, out
    assert docker.inspect(ref_b)["Id"] == second.image_id


def test_300mb_layer_streamed_push_and_pull(registry: RegistryProcess, docker: Docker, images: ImageFactory) -> None:
    """A 300 MB incompressible layer: the daemon's single chunked PATCH, then a pull of it."""
    big = images.random_layer(300 * MB)
    img = images.docker_archive("e2e/big:1", layers=[big])
    docker.load(img.path)
    big.path.unlink()
    img.path.unlink()
    ref = registry.ref("big/blob", "1")
    docker.tag(img.tag, ref)

    digest, out = docker.push(ref, timeout=900)
    with registry.http() as c:
        man = c.get(f"/v2/big/blob/manifests/{digest}", headers={"Accept": DOCKER_MANIFEST}).json()
        layer = max(man["layers"], key=lambda d: d["size"])
        assert layer["size"] > 300 * MB, man
        h = c.head(f"/v2/big/blob/blobs/{layer['digest']}")
        assert h.status_code == 200
        assert int(h.headers["Content-Length"]) == layer["size"]
        assert h.headers["Docker-Content-Digest"] == layer["digest"]

    docker.rmi(ref, img.tag)
    assert not docker.exists(ref)
    docker.pull(ref, timeout=900)
    assert docker.inspect(ref)["Id"] == img.image_id  # the daemon checked every diff_id
    assert docker.repo_digest(ref) == digest
