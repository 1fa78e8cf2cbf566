"""oras (PyPI oras-py): artifacts, a `subject` on an image, and the referrers API."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from .clients import Skopeo
from .helpers import file_digest
from .images import OCI_INDEX, ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e

SIG_TYPE = "application/vnd.moorage.e2e.signature"
SBOM_TYPE = "application/vnd.moorage.e2e.sbom"


def test_oras_artifact_push_pull_chunked(registry: RegistryProcess, oras: ModuleType, tmp_path: Path) -> None:
    """An artifact of two files, one uploaded in Content-Range PATCH chunks; pulled back intact."""
    small = tmp_path / "readme.txt"
    small.write_text("hello from oras\n")
    big = tmp_path / "data.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    reg = oras.connect(registry.host)
    target = f"{registry.host}/art/files:1"
    res = oras.push(
        reg,
        target,
        [small, big],
        config_media_type="application/vnd.moorage.e2e.config",
        chunked=True,
        chunk_size=1024 * 1024,
    )
    assert res.status == 201 and res.digest.startswith("sha256:")

    out = tmp_path / "pulled"
    files = sorted(Path(f).name for f in oras.pull(reg, target, out))
    assert files == ["data.bin", "readme.txt"]
    assert file_digest(out / "data.bin") == file_digest(big)
    assert (out / "readme.txt").read_text() == "hello from oras\n"


def test_oras_subject_and_referrers(
    registry: RegistryProcess,
    moorage_only: None,
    oras: ModuleType,
    skopeo: Skopeo,
    images: ImageFactory,
    tmp_path: Path,
) -> None:
    """Two artifacts whose subject is an image; GET /v2/<name>/referrers/<digest> lists and filters them."""
    img = images.docker_archive("e2e/signed:1")
    image_ref = registry.ref("art/app", "1.0")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{image_ref}")

    reg = oras.connect(registry.host)
    subject = oras.subject_of(reg, image_ref)
    sig = tmp_path / "signature.sig"
    sig.write_text("not really a signature\n")
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"packages": []}\n')

    with registry.http() as c:
        empty = c.get(f"/v2/art/app/referrers/{subject.digest}")
        assert empty.status_code == 200, empty.text
        assert empty.json()["manifests"] == []

    sig_push = oras.push(reg, f"{registry.host}/art/app:sig", [sig], config_media_type=SIG_TYPE, subject=subject)
    assert sig_push.headers.get("OCI-Subject") == subject.digest, dict(sig_push.headers)
    sbom_push = oras.push(reg, f"{registry.host}/art/app:sbom", [sbom], config_media_type=SBOM_TYPE, subject=subject)

    index, headers = oras.referrers(reg, registry.host, "art/app", subject.digest)
    assert index["mediaType"] == OCI_INDEX
    assert headers["Content-Type"].split(";")[0] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sig_push.digest, sbom_push.digest}
    assert by_digest[sig_push.digest]["artifactType"] == SIG_TYPE
    assert by_digest[sbom_push.digest]["artifactType"] == SBOM_TYPE

    only_sig, headers = oras.referrers(reg, registry.host, "art/app", subject.digest, artifact_type=SIG_TYPE)
    assert [m["digest"] for m in only_sig["manifests"]] == [sig_push.digest]
    assert "artifactType" in headers.get("OCI-Filters-Applied", "")

    out = tmp_path / "pulled"
    oras.pull(reg, f"{registry.host}/art/app@{sig_push.digest}", out)
    assert (out / "signature.sig").read_text() == "not really a signature\n"

    with registry.http() as c:
        assert c.delete(f"/v2/art/app/manifests/{sig_push.digest}").status_code == 202
    index, _ = oras.referrers(reg, registry.host, "art/app", subject.digest)
    assert [m["digest"] for m in index["manifests"]] == [sbom_push.digest]
