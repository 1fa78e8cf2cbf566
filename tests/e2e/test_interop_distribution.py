"""Interop with CNCF Distribution 2.8.2 on ONE data directory, in both directions.

One server writes (docker push, a second image sharing layers in another repository, a multi-arch OCI
index by skopeo, an oras artifact), stops, and the other serves the same `rootdirectory`: every tag
and digest, the catalog, every blob, docker pulls by tag/digest/platform and a skopeo copy of the
whole index must come out the same.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from .clients import Docker, Skopeo
from .helpers import unique
from .images import ImageFactory
from .interop import manifest, populate, verify
from .servers import ServerFactory

pytestmark = pytest.mark.e2e


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
