"""containerd's `ctr`: single-PUT blob uploads (POST then one PUT with the whole body) and pulls."""

from __future__ import annotations

import json

import pytest

from .clients import Ctr
from .helpers import sha256_digest, unique
from .images import MANIFEST_ACCEPT, ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e


def image_digest(ctr: Ctr, ref: str) -> str:
    """The manifest digest of a containerd image (`ctr images ls`)."""
    for line in ctr("images", "ls").stdout.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == ref:
            return cols[2]
    raise AssertionError(f"{ref} not in `ctr images ls`")


def test_ctr_single_put_push_and_pull(registry: RegistryProcess, ctr: Ctr, images: ImageFactory) -> None:
    """`ctr images push --plain-http` (needs Docker-Content-Digest on PUTs), then pull by tag and digest."""
    local = f"docker.io/e2e/{unique('ctr')}:1"
    img = images.docker_archive(local, layers=[images.layer(), images.layer()])
    ctr("images", "import", "--no-unpack", str(img.path))
    ref = registry.ref("ctr/app", "1")
    ctr("images", "tag", local, ref)
    pushed = image_digest(ctr, ref)
    ctr("images", "push", "--plain-http", ref)

    with registry.http() as c:
        r = c.get("/v2/ctr/app/manifests/1", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200, r.text
        assert r.headers["Docker-Content-Digest"] == pushed == sha256_digest(r.content)
        blobs = [json.loads(r.content)["config"]["digest"]] + [d["digest"] for d in json.loads(r.content)["layers"]]
        for digest in blobs:
            assert c.head(f"/v2/ctr/app/blobs/{digest}").status_code == 200

    ctr.remove_all()
    assert not (ctr.content_digests() & set(blobs)), "content still in containerd: the pull would not fetch"

    ctr("images", "pull", "--plain-http", ref)
    assert image_digest(ctr, ref) == pushed
    assert set(blobs) <= ctr.content_digests()
    check = ctr("images", "check").stdout
    assert "complete" in check, check

    ctr.remove_all()
    by_digest = registry.ref("ctr/app", pushed)
    ctr("images", "pull", "--plain-http", by_digest)
    assert image_digest(ctr, by_digest) == pushed
    assert set(blobs) <= ctr.content_digests()
