"""Quotas per namespace: refused before the bytes are stored when the size is declared, at the latest at
the manifest; usage counted once per namespace and reconciled by GC."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from registry.config import ConfigError, parse
from registry.maintenance.quotas import Quota, Quotas, parse_size
from storage.driver.filesystem import FilesystemDriver
from storage.gc import CLOCK_SLACK, GarbageCollector
from storage.lease import Lease
from storage.usage import UsageLedger

from .conftest import OCI_MANIFEST, make_client, put_manifest, sha256

LIMIT = 3000
CONFIG = b'{"os":"linux"}'


def quota_client(root: Path):  # type: ignore[no-untyped-def]
    storage = {"filesystem": {"rootdirectory": str(root)}, "maintenance": {"gc": {"grace": "0s"}},
               "quotas": [{"namespaces": ["team"], "limit": LIMIT}]}
    return make_client(root, storage=storage)


def usage(root: Path, ns: str) -> int:
    return asyncio.run(UsageLedger(FilesystemDriver(str(root))).usage(ns))


def manifest_for(blobs: dict[str, int], padding: int = 0) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(CONFIG),
                                  "size": len(CONFIG)},
                       "layers": [{"mediaType": "application/octet-stream", "digest": d, "size": s}
                                  for d, s in blobs.items()], "annotations": {"padding": "x" * padding}}).encode()


def test_declared_sizes_are_refused_before_storing_and_manifests_at_the_latest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with quota_client(root) as c:
        big = b"a" * 2000
        assert c.post(f"/v2/team/app/blobs/uploads/?digest={sha256(big)}", content=big).status_code == 201
        c.post(f"/v2/team/app/blobs/uploads/?digest={sha256(CONFIG)}", content=CONFIG)
        assert usage(root, "team") == 2000 + 14
        # the same blob in another repository of the namespace counts once
        assert c.post(f"/v2/team/other/blobs/uploads/?mount={sha256(big)}&from=team/app").status_code == 201
        assert usage(root, "team") == 2014
        # a monolithic upload declares its size: refused before anything is stored
        more = b"b" * 1500
        r = c.post(f"/v2/team/app/blobs/uploads/?digest={sha256(more)}", content=more)
        assert r.status_code == 403
        error = r.json()["errors"][0]
        assert error["code"] == "DENIED" and "namespace team stores 2014 bytes of its 3000" in error["message"]
        assert error["detail"] == {"namespace": "team", "usage": 2014, "limit": 3000, "adding": 1500}
        assert c.head(f"/v2/team/app/blobs/{sha256(more)}").status_code == 404
        # a PATCH with a length is refused too
        location = c.post("/v2/team/app/blobs/uploads/").headers["Location"]
        r = c.patch(location, content=more, headers={"Content-Range": "0-1499", "Content-Length": "1500"})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        # a streamed upload (no length) is refused when it completes, before it becomes a blob
        assert c.patch(location, content=iter([more])).status_code == 202
        r = c.put(f"{location}?digest={sha256(more)}")
        assert r.status_code == 403 and r.json()["errors"][0]["detail"]["adding"] == 1500
        assert c.head(f"/v2/team/app/blobs/{sha256(more)}").status_code == 404
        # the manifest itself counts: at the latest it is refused
        r = put_manifest(c, "team/app", "1", manifest_for({sha256(big): 2000}, padding=1000))
        assert r.status_code == 403 and "namespace team" in r.json()["errors"][0]["message"]
        assert c.get("/v2/team/app/manifests/1").status_code == 404
        # other namespaces have no quota
        assert c.post(f"/v2/other/app/blobs/uploads/?digest={sha256(more)}", content=more).status_code == 201
        # deleting the blob from a repository and GC give the namespace room again
        assert put_manifest(c, "team/app", "small", manifest_for({sha256(big): 2000})).status_code == 201
        small = sha256(manifest_for({sha256(big): 2000}))
        assert c.delete(f"/v2/team/app/manifests/{small}").status_code == 202
        time.sleep(1.1 + CLOCK_SLACK)
        driver = FilesystemDriver(str(root))
        collector = GarbageCollector(driver, grace=0, lease=Lease(driver, "gc", settle=0), ledger=UsageLedger(driver))
        asyncio.run(collector.run())
        assert usage(root, "team") == 0
        r = put_manifest(c, "team/app", "1", manifest_for({sha256(big): 2000}, padding=1000))
        assert r.status_code == 400  # no quota error now: the layer was collected, an unknown blob


def test_quota_arithmetic_and_config() -> None:
    assert [parse_size(v, "k") for v in (0, "512", "10KiB", "1.5 MB", "2GiB")] == [0, 512, 10240, 1_500_000, 2 << 30]
    quotas = Quotas([Quota(("team",), 100), Quota(("ci-*", "x?"), 50), Quota(("*",), 10)])
    assert [quotas.limit_for(ns) for ns in ("team", "ci-a", "xy", "other")] == [100, 50, 50, 10]
    assert parse({"storage": {"quotas": [{"namespaces": "team", "limit": "1GB"}]}}).storage.quotas.rules == [
        Quota(("team",), 10**9)]
    for bad, message in [([{"namespaces": ["a/b"], "limit": 1}], "bad pattern"),
                         ([{"namespaces": ["a"], "limit": "lots"}], r"storage.quotas\[0\].limit"),
                         ([{"namespaces": ["a"]}], "limit: required"), ({"a": 1}, "expected a list"),
                         ([{"namespaces": ["a"], "limit": 1, "soft": True}], "unknown key")]:
        with pytest.raises(ConfigError, match=message):
            parse({"storage": {"quotas": bad}})
