"""Quotas per namespace: refused before the bytes are stored when the size is declared, at the latest at
the manifest; usage counted once per namespace and reconciled by GC."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.config import ConfigError, parse
from registry.http.app import create_app
from registry.instance import Registry
from registry.maintenance.quotas import Quota, Quotas, parse_size
from storage.accounting import usage_report
from storage.driver.filesystem import FilesystemDriver
from storage.gc import CLOCK_SLACK, GarbageCollector
from storage.lease import Lease
from storage.usage import Usage, UsageLedger

from .conftest import OCI_MANIFEST, image_manifest, make_client, put_manifest, sha256

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


# --- issue 24 item 9: one truth, atomic under concurrency -------------------------------------------

KiB = 1024
MiB_LIMIT = 1 << 20


def mib_client(root: Path):  # type: ignore[no-untyped-def]
    storage = {"filesystem": {"rootdirectory": str(root)}, "quotas": [{"namespaces": ["team"], "limit": MiB_LIMIT}]}
    return make_client(root, storage=storage)


def figures(root: Path, ns: str):  # type: ignore[no-untyped-def]
    return asyncio.run(UsageLedger(FilesystemDriver(str(root))).figures(ns))


def du_bytes(root: Path, ns: str) -> int:
    report = asyncio.run(usage_report(FilesystemDriver(str(root))))
    return next((h.bytes for h in report.namespaces if h.name == ns), 0)


def test_bytes_of_unfinished_uploads_count(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with mib_client(root) as c:
        chunk = b"u" * (400 * KiB)
        locations = [c.post("/v2/team/app/blobs/uploads/").headers["Location"] for _ in range(3)]
        statuses = [c.patch(loc, content=chunk, headers={"Content-Range": f"0-{len(chunk) - 1}"}).status_code
                    for loc in locations]
        assert statuses == [202, 202, 403]  # the third would take the namespace over 1 MiB
        assert figures(root, "team").uploading == 800 * KiB
        # a streamed PATCH (no length) is taken while there is room, and counts for what it stored
        assert c.patch(locations[2], content=iter([b"s" * (100 * KiB)])).status_code == 202
        assert figures(root, "team").uploading == 900 * KiB
        assert c.delete(locations[0]).status_code == 204  # a cancelled session no longer counts
        assert figures(root, "team").uploading == 500 * KiB
    purged = asyncio.run(Registry.build(parse({"storage": {"filesystem": {"rootdirectory": str(root)},
                                                           "quotas": [{"namespaces": ["team"], "limit": 1}]}})
                                        ).writer.purge_uploads(0))
    assert len(purged) == 2 and figures(root, "team").uploading == 0  # purged sessions neither


def test_a_refused_completion_removes_its_session(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with mib_client(root) as c:
        big = b"b" * (900 * KiB)
        assert c.post(f"/v2/team/app/blobs/uploads/?digest={sha256(big)}", content=big).status_code == 201
        more = b"m" * (200 * KiB)
        location = c.post("/v2/team/app/blobs/uploads/").headers["Location"]
        assert c.patch(location, content=iter([more])).status_code == 202  # streamed: taken, counted
        r = c.put(f"{location}?digest={sha256(more)}")
        assert r.status_code == 403 and r.json()["errors"][0]["detail"]["adding"] == len(more)
        # as Distribution: the session is gone (clients upload again), and so are its bytes
        assert c.get(location).status_code == 404
        assert figures(root, "team") == Usage(stored=len(big), uploading=0)
        assert c.head(f"/v2/team/app/blobs/{sha256(more)}").status_code == 404


def test_after_deletes_the_quota_figure_and_du_agree_without_gc(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with mib_client(root) as c:
        shared, own = b"s" * (100 * KiB), b"o" * (50 * KiB)
        first = image_manifest(c, "team/app", [shared, own])
        second = image_manifest(c, "team/other", [shared])
        digests = [put_manifest(c, name, "1", doc).headers["Docker-Content-Digest"]
                   for name, doc in (("team/app", first), ("team/other", second))]
        assert figures(root, "team").stored == du_bytes(root, "team") > 150 * KiB
        assert c.delete(f"/v2/team/app/manifests/{digests[0]}").status_code == 202
        assert c.delete(f"/v2/team/app/blobs/{sha256(own)}").status_code == 202
        assert c.delete(f"/v2/team/app/blobs/{sha256(shared)}").status_code == 202  # team/other keeps it
        assert figures(root, "team").stored == du_bytes(root, "team")
        assert c.delete("/v2/team/other/manifests/1").status_code == 202  # a tag: nothing unlinked
        assert c.delete(f"/v2/team/other/manifests/{digests[1]}").status_code == 202
        assert c.delete(f"/v2/team/other/blobs/{sha256(shared)}").status_code == 202
        assert figures(root, "team").stored == du_bytes(root, "team")
        # pushing again counts again
        assert put_manifest(c, "team/other", "2", image_manifest(c, "team/other", [shared])).status_code == 201
        assert figures(root, "team").stored == du_bytes(root, "team") > 100 * KiB


async def stream(data: bytes) -> AsyncIterator[bytes]:
    """A request body without Content-Length."""
    yield data


def test_parallel_uploads_and_mounts_do_not_all_fit(tmp_path: Path) -> None:
    """16 parallel completions (chunked, monolithic with and without a length) or mounts of 100 KiB each
    into a 1 MiB namespace: at most 10 are accepted, and what is stored stays within the limit."""
    root = tmp_path / "root"
    blobs = [bytes([i]) * (100 * KiB) for i in range(16)]
    with mib_client(root) as c:
        for blob in blobs:  # in a namespace without a quota, to mount from
            assert c.post(f"/v2/src/app/blobs/uploads/?digest={sha256(blob)}", content=blob).status_code == 201

    async def race(kind: str, name: str) -> int:
        app = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(root)},
                                            "quotas": [{"namespaces": ["team"], "limit": MiB_LIMIT}]}}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as c:
            async def one(blob: bytes) -> int:
                digest = sha256(blob)
                if kind == "mount":
                    r = await c.post(f"/v2/{name}/blobs/uploads/?mount={digest}&from=src/app")
                    return r.status_code
                if kind == "monolithic":
                    r = await c.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=blob)
                    return r.status_code
                if kind == "streamed":
                    r = await c.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=stream(blob))
                    return r.status_code
                location = (await c.post(f"/v2/{name}/blobs/uploads/")).headers["Location"]
                r = await c.patch(location, content=stream(blob))  # streamed chunks: the completion decides
                if r.status_code != 202:
                    return r.status_code
                return (await c.put(f"{location}?digest={digest}")).status_code

            statuses = await asyncio.gather(*(one(blob) for blob in blobs))
            await app.registry.close()
        assert set(statuses) <= {201, 403}, statuses
        return statuses.count(201)

    for kind in ("chunked", "monolithic", "streamed", "mount"):
        name = f"team/{kind}"
        accepted = asyncio.run(race(kind, name))
        assert 1 <= accepted <= 10, (kind, accepted)
        stored = figures(root, "team")
        assert stored.total <= MiB_LIMIT and du_bytes(root, "team") <= MiB_LIMIT, (kind, stored)
        with mib_client(root) as c:  # room for the next kind
            for blob in blobs:
                c.delete(f"/v2/{name}/blobs/{sha256(blob)}")
        assert figures(root, "team") == Usage(0, 0), kind
