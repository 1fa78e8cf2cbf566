"""GC through the API: push, delete, ``moorage gc``, and the pushes that rely on old blobs meanwhile."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from auth.terms import OPERATOR
from registry.cli import main
from registry.config import ConfigError, parse
from storage import paths
from storage.digests import Digest, parse_digest
from storage.driver.filesystem import FilesystemDriver
from storage.gc import CLOCK_SLACK, GarbageCollector
from storage.gc_watch import VIEW_TTL
from storage.lease import Lease

from .conftest import image_manifest, make_client, put_manifest, sha256

GC = {"maintenance": {"gc": {"grace": "0s"}}}  # the registry and `moorage gc` use the same grace window


def write_config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(root)}, **GC}}))
    return config


def gc_client(root: Path) -> TestClient:
    return make_client(root, storage={"filesystem": {"rootdirectory": str(root)}, **GC})


def age() -> None:
    time.sleep(1.1 + CLOCK_SLACK)


def test_gc_command_frees_deleted_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with gc_client(root) as c:
        kept = image_manifest(c, "team/app", [b"shared", b"kept"])
        assert put_manifest(c, "team/app", "1", kept).status_code == 201
        gone = image_manifest(c, "team/app", [b"shared", b"gone" * 1000])
        r = put_manifest(c, "team/app", "0", gone)
        gone_digest = r.headers["Docker-Content-Digest"]
        assert c.delete(f"/v2/team/app/manifests/{gone_digest}").status_code == 202
        age()
        assert main(["gc", str(write_config(tmp_path, root)), "--dry-run"]) == 0
        assert c.get(f"/v2/team/app/blobs/{sha256(b'gone' * 1000)}").status_code == 200
        assert main(["gc", str(write_config(tmp_path, root))]) == 0
        out = capsys.readouterr()
        assert "gc: mark: 1" in out.err and "gc: sweep blobs: 2" in out.err  # plain lines: no terminal
        assert "dry run: 1 repositories; manifests: 1 kept, 0 would remove; blobs: 4 kept" in out.out
        assert f"2 removed ({(4000 + len(gone)) / 1024:.1f} KiB freed)" in out.out
        assert c.get(f"/v2/team/app/blobs/{sha256(b'gone' * 1000)}").status_code == 404
        assert c.get(f"/v2/team/app/manifests/{gone_digest}").status_code == 404
        r = c.get("/v2/team/app/manifests/1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.content == kept
        for blob in (b"shared", b"kept"):
            assert c.get(f"/v2/team/app/blobs/{sha256(blob)}").content == blob


def test_head_and_mount_while_gc_runs_protect_an_old_unreferenced_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with gc_client(root) as c:
        doc = image_manifest(c, "src", [b"old layer"])
        digest = put_manifest(c, "src", "x", doc).headers["Docker-Content-Digest"]
        assert c.delete(f"/v2/src/manifests/{digest}").status_code == 202
        age()
        driver = FilesystemDriver(str(root))
        lease = Lease(driver, "gc", settle=0)  # a collector has started: the registry sees it
        asyncio.run(lease.acquire())
        time.sleep(VIEW_TTL)
        layer = sha256(b"old layer")
        # a push finds the layer ("layer already exists") and mounts it into another repository
        assert c.head(f"/v2/src/blobs/{layer}").status_code == 200
        assert c.post(f"/v2/dst/blobs/uploads/?mount={layer}&from=src").status_code == 201
        result = asyncio.run(GarbageCollector(driver, grace=0, lease=lease, notice=0).run())
        assert result.blobs_removed >= 1  # the deleted manifest went; the layer was spared
        assert c.get(f"/v2/src/blobs/{layer}").content == b"old layer"
        assert c.get(f"/v2/dst/blobs/{layer}").content == b"old layer"
        # the push completes afterwards, and pulls
        doc = image_manifest(c, "dst", [b"old layer"])
        assert put_manifest(c, "dst", "1", doc).status_code == 201


def test_manifest_put_while_gc_runs_rechecks_its_blobs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with gc_client(root) as c:
        doc = image_manifest(c, "app", [b"layer"])
        driver = FilesystemDriver(str(root))
        asyncio.run(Lease(driver, "gc", settle=0).acquire())
        time.sleep(VIEW_TTL)  # a collector marks only once every replica has seen its lease
        manifests = c.app.registry.manifests
        store = manifests.put

        async def put_while_swept(name: str, digest: Digest, content: bytes) -> None:
            await store(name, digest, content)
            # the GC swept the layer just after this push checked it
            await driver.delete(paths.blob_dir(parse_digest(sha256(b"layer"))))

        manifests.put = put_while_swept
        r = put_manifest(c, "app", "1", doc)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        assert c.get("/v2/app/manifests/1").status_code == 404
        assert c.get(f"/v2/app/manifests/{sha256(doc)}").status_code == 404


def test_gc_config_keys() -> None:
    gc = parse({"storage": {"maintenance": {"gc": {"enabled": True, "interval": "12h", "grace": "30m",
                                                   "deleteuntagged": True}}}}).storage.gc
    assert (gc.enabled, gc.interval, gc.grace, gc.deleteuntagged, gc.dryrun) == (True, 43200, 1800, True, False)
    for bad in ({"interval": "0s"}, {"grace": "-1s"}, {"enabled": "yes"}, {"every": "1h"}):
        with pytest.raises(ConfigError, match="storage.maintenance.gc"):
            parse({"storage": {"maintenance": {"gc": bad}}})


def test_scheduled_collection_inside_the_registry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = {"filesystem": {"rootdirectory": str(root)},
               "maintenance": {"gc": {"enabled": True, "interval": "0.5s", "grace": "0s"}}}
    with make_client(root, storage=storage) as c:  # the context runs the lifespan: the schedule starts
        doc = image_manifest(c, "app", [b"scheduled"])
        digest = put_manifest(c, "app", "1", doc).headers["Docker-Content-Digest"]
        assert c.delete(f"/v2/app/manifests/{digest}").status_code == 202
        deadline = time.monotonic() + 30
        while c.get(f"/v2/app/blobs/{sha256(b'scheduled')}").status_code == 200:
            assert time.monotonic() < deadline, "the scheduled collection did not remove the blob"
            time.sleep(0.2)
    lease = json.loads((root / "docker/registry/v2/_moorage/leases/gc").read_text())
    assert lease["expires"] == 0  # released, even by a run cut short (the token stays: storage.gc_watch)


def test_scheduled_collection_applies_the_namespaces_retention(tmp_path: Path) -> None:
    """A namespace's retention set in the database after the registry started is applied by the next
    scheduled run (read when each run starts), the expired tag's blobs freed in the same run."""
    root = tmp_path / "root"
    storage = {"filesystem": {"rootdirectory": str(root)},
               "maintenance": {"gc": {"enabled": True, "interval": "0.5s", "grace": "0s"}}}
    with make_client(root, storage=storage, auth={"database": {}}) as c:
        manage = c.app.registry.management
        manage.cost = 4
        c.portal.call(lambda: manage.create_user(OPERATOR, "ada", "ada-secret-pw", admin=True))
        c.portal.call(lambda: manage.create_namespace(OPERATOR, "ci"))
        c.headers["Authorization"] = "Basic " + base64.b64encode(b"ada:ada-secret-pw").decode()
        for tag in ("old", "newest"):
            assert put_manifest(c, "ci/app", tag, image_manifest(c, "ci/app", [tag.encode()])).status_code == 201
            age()  # tag ages differ by whole seconds
        assert c.get("/v2/ci/app/tags/list").json()["tags"] == ["newest", "old"]  # no retention yet
        c.portal.call(lambda: manage.update_namespace(OPERATOR, "ci", retention={"keepnewest": 1}))
        deadline = time.monotonic() + 30
        while c.get("/v2/ci/app/tags/list").json()["tags"] != ["newest"]:
            assert time.monotonic() < deadline, "the scheduled collection did not apply the namespace's retention"
            time.sleep(0.2)
        while c.get(f"/v2/ci/app/blobs/{sha256(b'old')}").status_code != 404:
            assert time.monotonic() < deadline, "the expired tag's blob was not freed"
            time.sleep(0.2)
        assert c.get(f"/v2/ci/app/blobs/{sha256(b'newest')}").status_code == 200


def test_retention_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with gc_client(root) as c:
        for tag in ("old", "older", "v1", "newest"):
            doc = image_manifest(c, "ci/app", [tag.encode()])
            assert put_manifest(c, "ci/app", tag, doc).status_code == 201
            time.sleep(1.1)  # tag ages differ by whole seconds (S3's resolution; here for clarity)
        age()
        config = tmp_path / "retention.yml"
        config.write_text(yaml.safe_dump({"storage": {
            "filesystem": {"rootdirectory": str(root)},
            "maintenance": {"gc": {"grace": "0s"}, "retention": {"policies": [
                {"repositories": ["ci/**"], "keepnewest": 1, "protect": ["v*"]}]}}}}))
        assert main(["retention", str(config), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "would remove tag ci/app:old (" in out and "would remove tag ci/app:older (" in out
        assert "tags: 2 would remove" in out and "v1" not in out.split("dry run:")[0]
        assert c.get("/v2/ci/app/tags/list").json()["tags"] == ["newest", "old", "older", "v1"]
        assert main(["retention", str(config)]) == 0
        assert c.get("/v2/ci/app/tags/list").json()["tags"] == ["newest", "v1"]
        assert c.get(f"/v2/ci/app/blobs/{sha256(b'old')}").status_code == 404  # collected in the same run
        assert c.get(f"/v2/ci/app/blobs/{sha256(b'v1')}").status_code == 200
        no_policy = tmp_path / "none.yml"
        no_policy.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
        assert main(["retention", str(no_policy)]) == 2
