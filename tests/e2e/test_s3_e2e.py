"""Moorage on S3 end to end: stateless replicas on one bucket, and Distribution 2.8.2's s3 driver on
the same bucket in both directions.

Runs on moto by default and on a real Ceph radosgw with ``-m radosgw``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bench.s3 import S3Backend, ServerUnavailable, start_moto
from tests.storage.servers import MOTO_PORTS, Nginx, shared_radosgw, start_nginx

from .clients import Docker, Skopeo
from .helpers import IN_CI, sha256_digest
from .images import DOCKER_MANIFEST, ImageFactory
from .interop import populate, push_referrer, verify
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
MiB = 1 << 20


@pytest.fixture(scope="module", params=["moto", pytest.param("radosgw", marks=pytest.mark.radosgw)])
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    if request.param == "radosgw" and "radosgw" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("radosgw suite not selected: run `pytest -m radosgw`")
    try:
        if request.param == "moto":
            server = start_moto(tmp_path_factory.mktemp("moto"), MOTO_PORTS)
        else:
            server = shared_radosgw(lambda: tmp_path_factory.mktemp("radosgw"))
    except ServerUnavailable as e:
        if IN_CI:
            pytest.fail(f"{request.param} unavailable in CI: {e}")
        pytest.skip(f"{request.param.upper()} UNAVAILABLE, S3 e2e NOT RUN: {e}")
    yield server
    if request.param == "moto":
        server.stop()  # radosgw stays up for the rest of the run


def on_s3(
    factory: ServerFactory, s3: S3Backend, bucket: str, root: str, redirect: bool = True, **extra: Any
) -> RegistryProcess:
    """Start a registry (Moorage or Distribution) whose storage is ``bucket``/``root`` on ``s3``."""
    env = {"AWS_CA_BUNDLE": ""}  # Distribution 2.8.2 panics when it is set
    proc = factory(start=False, env=env)
    storage = proc.config["storage"]
    storage.pop("filesystem", None)
    storage["s3"] = s3.parameters(bucket, rootdirectory=root, secure=False, **extra)
    storage["redirect"] = {"disable": not redirect}
    return proc.start()


def upstream_of(nginx: Nginx, pattern: str, expect: int = 1) -> list[str]:
    """The replica (upstream address) that served each logged request matching ``pattern``.

    nginx logs a request just after its response went out: wait a little for ``expect`` lines."""
    deadline = time.monotonic() + 5
    while True:
        served = [line.split()[2] for line in nginx.log_lines() if re.search(pattern, line)]
        if len(served) >= expect or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def chunked_upload(c: httpx.Client, repo: str, chunks: list[bytes]) -> tuple[str, str]:
    """POST, one PATCH per chunk, a status GET, PUT: returns (upload id, digest)."""
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    upload_id = r.headers["Docker-Upload-UUID"]
    offset = 0
    for chunk in chunks:
        r = c.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]
    status = c.get(location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
    digest = "sha256:" + hashlib.sha256(b"".join(chunks)).hexdigest()
    sep = "&" if "?" in location else "?"
    r = c.put(f"{location}{sep}digest={digest}")
    assert r.status_code == 201, r.text
    return upload_id, digest


def img_layer_digest(c: httpx.Client, manifest_digest: str) -> str:
    doc = c.get(f"/v2/replicas/app/manifests/{manifest_digest}", headers={"Accept": DOCKER_MANIFEST}).json()
    return str(max(doc["layers"], key=lambda d: d["size"])["digest"])


def test_two_replicas_on_one_bucket_behind_nginx(
    start_moorage: ServerFactory, s3: S3Backend, docker: Docker, images: ImageFactory, tmp_path: Path
) -> None:
    """docker push through a round-robin proxy (each upload's requests alternate between replicas), then
    pulls through each replica directly: one with presigned redirects, one streaming."""
    bucket = s3.make_bucket()
    a = on_s3(start_moorage, s3, bucket, "/registry", redirect=True)
    b = on_s3(start_moorage, s3, bucket, "/registry", redirect=False)
    try:
        nginx = start_nginx(tmp_path / "nginx", [a.host, b.host], "$request_method $request_uri $upstream_addr $status")
    except ServerUnavailable as e:
        if IN_CI:
            pytest.fail(str(e))
        pytest.skip(f"NGINX UNAVAILABLE: {e}")
    try:
        proxy = f"127.0.0.1:{nginx.port}"
        # a chunked upload whose requests alternate strictly: small chunks staged, large ones multipart
        chunks = [b"a" * (3 * MiB), b"b" * 100, b"c" * (6 * MiB), b"d" * (11 * MiB), b"e" * 10]
        with httpx.Client(base_url=f"http://{proxy}", timeout=120) as c:
            upload_id, blob_digest = chunked_upload(c, "replicas/chunked", chunks)
        served = upstream_of(nginx, rf"/{upload_id}", expect=len(chunks) + 2)
        assert len(served) == len(chunks) + 2 and set(served) == {a.host, b.host}, served
        assert all(x != y for x, y in zip(served, served[1:], strict=False)), served
        for replica in (a, b):  # a answers with a presigned HEAD URL, b itself
            with replica.http(follow_redirects=True) as c:
                h = c.head(f"/v2/replicas/chunked/blobs/{blob_digest}")
                assert h.status_code == 200 and int(h.headers["Content-Length"]) == sum(map(len, chunks))

        img = images.docker_archive(
            "e2e/replicas:1", layers=[images.layer() for _ in range(3)] + [images.random_layer(12 * MiB)]
        )
        docker.load(img.path)
        ref = f"{proxy}/replicas/app:1.0"
        docker.tag(img.tag, ref)
        digest, out = docker.push(ref)
        assert out.count("Pushed") >= 5, out
        served = upstream_of(nginx, r"^(PATCH|PUT) /v2/replicas/app/blobs/uploads/")
        assert set(served) == {a.host, b.host}, served

        with httpx.Client(base_url=f"http://{proxy}", timeout=60) as c:
            subject = c.get(f"/v2/replicas/app/manifests/{digest}", headers={"Accept": DOCKER_MANIFEST}).content
            referrer = push_referrer(c, "replicas/app", digest, subject)

        answers = []
        for replica in (a, b):
            with replica.http() as c:
                tags = c.get("/v2/replicas/app/tags/list").json()
                catalog = c.get("/v2/_catalog").json()
                refs = c.get(f"/v2/replicas/app/referrers/{digest}").json()
                blob = c.get(f"/v2/replicas/app/blobs/{img_layer_digest(c, digest)}")
                assert blob.status_code == (307 if replica is a else 200), blob.status_code
            answers.append((tags, catalog, refs))
            assert [m["digest"] for m in refs["manifests"]] == [referrer]
            docker.rmi(ref, img.tag)
            pulled = replica.ref("replicas/app", "1.0")
            docker.pull(pulled)
            assert docker.inspect(pulled)["Id"] == img.image_id
            assert docker.repo_digest(pulled) == digest
            docker.rmi(pulled)
        assert answers[0] == answers[1]
        assert answers[0][0]["tags"] == ["1.0"]
        assert answers[0][1]["repositories"] == ["replicas/app"]  # "replicas/chunked" has no manifest
    finally:
        nginx.stop()


@pytest.mark.parametrize("writer_kind", ["distribution", "moorage"])
def test_interop_with_distribution_s3_driver(
    writer_kind: str,
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    s3: S3Backend,
    docker: Docker,
    skopeo: Skopeo,
    images: ImageFactory,
    oras: ModuleType,
    tmp_path: Path,
) -> None:
    """One registry writes the bucket through its s3 driver, stops, and the other serves everything."""
    bucket = s3.make_bucket()
    first, second = (
        (start_distribution, start_moorage) if writer_kind == "distribution" else (start_moorage, start_distribution)
    )
    writer = on_s3(first, s3, bucket, "/shared/root", redirect=False)
    written = populate(writer, docker, skopeo, images, oras, tmp_path)
    writer.stop()
    reader = on_s3(second, s3, bucket, "/shared/root", redirect=False)
    verify(reader, written, docker, skopeo, oras, tmp_path)


def test_replica_killed_mid_patch_loses_only_that_request(start_moorage: ServerFactory, s3: S3Backend) -> None:
    """kill -9 of a replica in the middle of a PATCH: the other replica continues the upload from the
    last acknowledged offset, nothing appears under the digest before the PUT, and no multipart upload
    is left behind once the upload is done."""
    bucket = s3.make_bucket()
    a = on_s3(start_moorage, s3, bucket, "/registry", redirect=False)
    b = on_s3(start_moorage, s3, bucket, "/registry", redirect=False)
    data = random_bytes(40 * MiB)
    digest = sha256_digest(data)
    first = 6 * MiB
    with a.http() as ca, b.http() as cb:
        r = ca.post("/v2/crash/app/blobs/uploads/")
        location = urlsplit(r.headers["Location"])
        path = location.path + (f"?{location.query}" if location.query else "")
        r = ca.patch(path, content=data[:first], headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{first - 1}"

        def multipart_uploads() -> list[dict[str, Any]]:
            return list(s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

        def dying_body() -> Iterator[bytes]:
            for i in range(first, len(data), MiB):
                if a.running and multipart_uploads():  # a part is being sent: the replica dies now
                    assert a.proc is not None
                    os.killpg(a.proc.pid, signal.SIGKILL)
                    a.proc.wait(10)
                yield data[i : i + MiB]

        with pytest.raises(httpx.HTTPError):
            ca.patch(path, content=dying_body(), headers={"Content-Type": "application/octet-stream"})
        assert not a.running and multipart_uploads()
        status = cb.get(path)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{first - 1}"
        assert cb.head(f"/v2/crash/app/blobs/{digest}").status_code == 404
        r = cb.patch(path, content=data[first:], headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
        sep = "&" if "?" in path else "?"
        assert cb.put(f"{path}{sep}digest={digest}").status_code == 201
        got = cb.get(f"/v2/crash/app/blobs/{digest}")
        assert got.status_code == 200 and sha256_digest(got.content) == digest
    a.stop()
    a.start()
    with a.http() as ca:
        assert ca.head(f"/v2/crash/app/blobs/{digest}").status_code == 200
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)
