"""S3-specific behaviour: configuration, bucket layout, presigned redirects, staging of small chunks,
crash recovery, request counts, and that slow S3 calls never block the event loop."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.s3 import S3Backend
from storage.driver import PathNotFound, StorageError
from storage.driver.s3 import S3Driver
from tests.storage.conftest import S3_TEST_PARAMETERS

MiB = 1 << 20
LOOPBACK = "http://127.0.0.1:1"  # never contacted: configuration tests only build clients


@pytest.fixture(params=["s3", pytest.param("radosgw", marks=pytest.mark.radosgw)])
def server(request: pytest.FixtureRequest) -> S3Backend:
    return request.getfixturevalue("moto_server" if request.param == "s3" else "radosgw_server")


@pytest.fixture
def bucket(server: S3Backend) -> str:
    return server.make_bucket()


@pytest.fixture
def make(server: S3Backend, bucket: str) -> Iterator[Any]:
    created: list[S3Driver] = []

    def factory(redirect: bool = True, **overrides: object) -> S3Driver:
        params = server.parameters(bucket, **{**S3_TEST_PARAMETERS, **overrides})
        driver = S3Driver.from_parameters(params, redirect=redirect)
        created.append(driver)
        return driver

    yield factory
    for driver in created:
        asyncio.run(driver.close())


def raw_keys(server: S3Backend, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def pending_uploads(server: S3Backend, bucket: str) -> list[str]:
    return [u["Key"] for u in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def dead_part_landed(server: S3Backend, bucket: str, key: str, number: int) -> None:
    """Wait (at most 30 s) until part ``number`` of the open upload at ``key`` is stored."""
    client = server.client()
    upload_id = next(u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"] if u["Key"] == key)
    deadline = time.monotonic() + 30
    while not any(p["PartNumber"] == number
                  for p in client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", ())):
        assert time.monotonic() < deadline, f"part {number} never landed"
        await asyncio.sleep(0.05)


# --- configuration (no server) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"region": "us-east-1"}, "bucket"),
        ({"bucket": "b"}, "region"),
        ({"bucket": "b", "region": "r", "bogus": 1}, "bogus"),
        ({"bucket": "b", "region": "r", "chunksize": 1024}, "chunksize"),
        ({"bucket": "b", "region": "r", "chunksize": "ten"}, "chunksize"),
        ({"bucket": "b", "region": "r", "multipartcopychunksize": 6 << 30}, "multipartcopychunksize"),
        ({"bucket": "b", "region": "r", "multipartcopymaxconcurrency": 0}, "multipartcopymaxconcurrency"),
        ({"bucket": "b", "region": "r", "secure": "maybe"}, "secure"),
        ({"bucket": "b", "region": "r", "accesskey": "only"}, "secretkey"),
        ({"bucket": "b", "region": "r", "storageclass": "COLD"}, "storageclass"),
        ({"bucket": "b", "region": "r", "maxthreads": 0}, "maxthreads"),
    ],
)
def test_bad_parameters_name_the_key(params: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^storage\.s3\.{key}: "):
        S3Driver.from_parameters(params)


def test_parameters_as_environment_strings_and_client_config() -> None:
    driver = S3Driver.from_parameters({
        "bucket": "b", "regionendpoint": "127.0.0.1:1", "secure": "false", "v4auth": "false",
        "chunksize": "5242880", "skipverify": "true", "encrypt": "true", "keyid": "k1",
        "storageclass": "reduced_redundancy", "rootdirectory": "/x/", "loglevel": "debug",
    })
    try:
        assert driver.params.chunksize == 5 * MiB
        assert driver.client.meta.endpoint_url == "http://127.0.0.1:1"
        assert driver.client.meta.region_name == "us-east-1"
        assert driver.client.meta.config.signature_version == "s3"
        assert driver.client.meta.config.s3["addressing_style"] == "path"
        assert driver.params.object_args() == {
            "StorageClass": "REDUCED_REDUNDANCY", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k1",
        }
        assert driver.key("/docker/registry/v2/blobs") == "x/docker/registry/v2/blobs"
        assert driver.redirect
    finally:
        asyncio.run(driver.close())


def test_defaults_follow_distribution() -> None:
    driver = S3Driver.from_parameters({"bucket": "b", "region": "eu-west-1", "storageclass": "NONE"},
                                      redirect=False)
    try:
        p = driver.params
        assert (p.chunksize, p.multipartcopychunksize, p.multipartcopythresholdsize) == (10 * MiB, 32 * MiB, 32 * MiB)
        assert (p.secure, p.v4auth, p.multipartcopymaxconcurrency) == (True, True, 100)
        assert driver.client.meta.config.signature_version == "s3v4"
        assert driver.client.meta.config.s3["addressing_style"] == "auto"
        assert p.object_args() == {}
        assert driver.key("/docker/registry/v2") == "docker/registry/v2"
        assert not driver.redirect
    finally:
        asyncio.run(driver.close())


# --- against a server --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("rootdirectory", "prefix"), [("", ""), ("/reg/root/", "reg/root/"), ("reg", "reg/")])
async def test_keys_are_distributions_layout(make: Any, server: S3Backend, bucket: str,
                                             rootdirectory: str, prefix: str) -> None:
    driver = make(rootdirectory=rootdirectory)
    await driver.put_content("/docker/registry/v2/repositories/a/b/_layers/sha256/ab/link", b"sha256:ab")
    assert raw_keys(server, bucket) == [f"{prefix}docker/registry/v2/repositories/a/b/_layers/sha256/ab/link"]
    assert await driver.list("/") == ["docker"]
    assert await driver.list("/docker/registry/v2/repositories/a") == ["b"]


@pytest.mark.anyio
async def test_presigned_redirects(make: Any, server: S3Backend) -> None:
    driver = make()
    await driver.put_content("/blobs/data", b"presigned content")
    url = await driver.redirect_url("/blobs/data", "GET")
    assert url is not None and url.startswith(server.endpoint) and "X-Amz-Expires=1200" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"presigned content"
    head_url = await driver.redirect_url("/blobs/data", "HEAD")
    assert head_url is not None
    request = urllib.request.Request(head_url, method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Length"] == str(len(b"presigned content"))
    assert await driver.redirect_url("/blobs/data", "DELETE") is None
    assert await make(redirect=False).redirect_url("/blobs/data", "GET") is None


@pytest.mark.anyio
async def test_small_chunks_are_staged_in_the_bucket(make: Any, server: S3Backend, bucket: str) -> None:
    """Less than a part: a plain object.  Then one multipart upload for the session, its tail under 5 MiB
    in ``.tail-<offset>``, never in memory, and copied into the last part inside S3 at commit."""
    client = server.client()
    writer = await make().writer("/_uploads/u1/data", append=True, resume=b"")
    await writer.write(b"a" * 1000)
    await writer.close()
    assert client.get_object(Bucket=bucket, Key="_uploads/u1/data")["Body"].read() == b"a" * 1000
    assert pending_uploads(server, bucket) == []  # nothing worth a part yet
    writer = await make().writer("/_uploads/u1/data", append=True, resume=writer.resume)
    assert writer.size == 1000
    await writer.write(b"b" * (7 * MiB))  # one part uploaded while writing, the rest on close
    await writer.close()
    assert pending_uploads(server, bucket) == ["_uploads/u1/data"]
    tail = f"_uploads/u1/data.tail-{5 * MiB}"
    assert client.head_object(Bucket=bucket, Key=tail)["ContentLength"] == 1000 + 2 * MiB
    writer = await make().writer("/_uploads/u1/data", append=True, resume=writer.resume)
    assert writer.size == 1000 + 7 * MiB
    await writer.commit()
    assert pending_uploads(server, bucket) == []
    assert client.head_object(Bucket=bucket, Key="_uploads/u1/data")["ContentLength"] == 1000 + 7 * MiB
    body = client.get_object(Bucket=bucket, Key="_uploads/u1/data")["Body"].read()
    assert body == b"a" * 1000 + b"b" * (7 * MiB)


@pytest.mark.anyio
async def test_crashed_writer_leaves_last_state_and_delete_aborts_its_upload(
    make: Any, server: S3Backend, bucket: str
) -> None:
    driver = make()
    await driver.put_content("/_uploads/u2/startedat", b"now")
    writer = await driver.writer("/_uploads/u2/data", append=True, resume=b"")
    await writer.write(b"x" * (6 * MiB))
    await writer.close()
    staged = writer.resume
    writer = await driver.writer("/_uploads/u2/data", append=True, resume=staged)
    await writer.write(b"y" * (6 * MiB))  # a part is uploaded; then the process "dies"
    assert pending_uploads(server, bucket) == ["_uploads/u2/data"]
    await dead_part_landed(server, bucket, "_uploads/u2/data", 2)  # (a part in flight would land after ours)
    resumed = await make().writer("/_uploads/u2/data", append=True, resume=staged)
    assert resumed.size == 6 * MiB  # the bytes of the unfinished request are not part of the upload
    await resumed.write(b"z")  # the tail is read back, the dead request's part 2 overwritten
    await resumed.commit()
    body = server.client().get_object(Bucket=bucket, Key="_uploads/u2/data")["Body"].read()
    assert body == b"x" * (6 * MiB) + b"z"
    await make().delete("/_uploads/u2")  # what cancelling or purging the upload session does
    assert pending_uploads(server, bucket) == []
    assert raw_keys(server, bucket) == []


@pytest.mark.anyio
async def test_request_counts(make: Any) -> None:
    driver = make()
    driver.request_counts(reset=True)

    async def cost(coro: Any) -> dict[str, int]:
        await coro
        return driver.request_counts(reset=True)

    assert await cost(driver.put_content("/c/a/link", b"x" * 100)) == {"PutObject": 1}
    assert await cost(driver.get_content("/c/a/link")) == {"GetObject": 1}
    assert await cost(driver.stat("/c/a/link")) == {"HeadObject": 1}
    assert await cost(driver.stat_file("/c/a/link")) == {"HeadObject": 1}
    assert await cost(driver.stat("/c/a")) == {"HeadObject": 1, "ListObjectsV2": 1}
    assert await cost(driver.list("/c")) == {"ListObjectsV2": 1}
    tokens: dict[str, bytes | None] = {}

    async def append(path: str, size: int) -> None:
        writer = await driver.writer(path, append=True, resume=tokens.get(path))
        await writer.write(b"z" * size)
        await writer.close()
        tokens[path] = writer.resume

    # continuing a small object nobody gave a token for: found, read back and written with the new bytes
    assert await cost(append("/c/a/link", 10)) == {"HeadObject": 1, "GetObject": 1, "PutObject": 1}
    await append("/c/big", 6 * MiB)  # one 5 MiB part, 1 MiB staged
    driver.request_counts(reset=True)
    # a session with parts, from its token: its tail is read back and staged again with the new bytes
    assert await cost(append("/c/big", 10)) == {"GetObject": 1, "PutObject": 1}
    assert await cost(driver.move("/c/a/link", "/c/b/link")) == {"HeadObject": 1, "CopyObject": 1, "DeleteObject": 1}
    assert await cost(driver.move("/c/b/link", "/c/a/link", 120)) == {"CopyObject": 1, "DeleteObject": 1}
    assert await cost(driver.delete("/c/a/link")) == {"ListObjectsV2": 1, "DeleteObjects": 1}
    assert await cost(driver.delete("/c")) == {  # and the open session of /c/big is aborted
        "ListObjectsV2": 1, "DeleteObjects": 1, "ListMultipartUploads": 1, "AbortMultipartUpload": 1}
    assert await cost(driver.delete_objects([("/d", [f"/d/{n}" for n in range(1500)])])) == {"DeleteObjects": 2}
    assert await cost(driver.redirect_url("/c/big")) == {}


@pytest.mark.anyio
async def test_slow_s3_call_does_not_block_the_loop(make: Any) -> None:
    driver = make()
    await driver.put_content("/slow/data", b"slow")
    await driver.put_content("/fast/data", b"fast")

    def delay(request: Any, **_: object) -> None:
        if "/slow/" in request.url:
            time.sleep(1.0)  # a stalled S3 request, in its pool thread

    driver.client.meta.events.register("before-send.s3.GetObject", delay)
    slow = asyncio.ensure_future(driver.get_content("/slow/data"))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    lag = 0.0
    for _ in range(10):
        tick = time.monotonic()
        await asyncio.sleep(0.01)
        lag = max(lag, time.monotonic() - tick - 0.01)
    assert await driver.get_content("/fast/data") == b"fast"
    assert time.monotonic() - t0 < 0.8 and lag < 0.2
    assert not slow.done()
    assert await slow == b"slow"


@pytest.mark.anyio
async def test_move_large_object_uses_multipart_copy(make: Any) -> None:
    driver = make()
    writer = await driver.writer("/mp/src")
    await writer.write(b"m" * (12 * MiB))
    await writer.commit()
    driver.request_counts(reset=True)
    await driver.move("/mp/src", "/mp/dst")
    counts = driver.request_counts()
    assert counts["UploadPartCopy"] == 3 and counts["CompleteMultipartUpload"] == 1
    assert "CopyObject" not in counts and "GetObject" not in counts
    assert (await driver.stat("/mp/dst")).size == 12 * MiB


@pytest.mark.anyio
async def test_storage_class_and_encryption(server: S3Backend, make: Any, bucket: str) -> None:
    if server.kind == "radosgw":
        pytest.skip("radosgw needs rgw_crypt_* settings for server-side encryption")
    driver = make(encrypt=True, storageclass="REDUCED_REDUNDANCY")
    await driver.put_content("/enc/a", b"secret")
    await driver.move("/enc/a", "/enc/b")
    head = server.client().head_object(Bucket=bucket, Key="enc/b")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"


@pytest.mark.anyio
@pytest.mark.radosgw
async def test_radosgw_checks_signatures(radosgw_server: S3Backend) -> None:
    bucket = radosgw_server.make_bucket()
    driver = S3Driver.from_parameters(radosgw_server.parameters(bucket, secretkey=uuid.uuid4().hex))
    try:
        with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
            await driver.put_content("/x", b"x")
        with pytest.raises(StorageError) as refused:
            await driver.stat("/x")
        assert not isinstance(refused.value, PathNotFound)
    finally:
        await driver.close()


@pytest.mark.anyio
async def test_v4auth_false_signs_with_sigv2(make: Any) -> None:
    driver = make(v4auth=False)
    await driver.put_content("/v2auth/a", b"signed v2")
    assert await driver.get_content("/v2auth/a") == b"signed v2"
    url = await driver.redirect_url("/v2auth/a")
    assert url is not None and "Signature=" in url and "X-Amz-Signature" not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"signed v2"


@pytest.mark.anyio
async def test_s3_requests_and_driver_operations_in_prometheus(make: Any) -> None:
    from prometheus_client import REGISTRY

    from storage.driver.instrumented import InstrumentedDriver

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    driver = InstrumentedDriver(make())
    puts, gets = value("moorage_s3_requests_total", operation="PutObject"), value(
        "moorage_s3_requests_total", operation="GetObject")
    ops = value("moorage_storage_operations_total", driver="s3", operation="get_content")
    errors = value("moorage_storage_errors_total", driver="s3", operation="get_content")
    await driver.put_content("/m/a/link", b"x")
    assert await driver.get_content("/m/a/link") == b"x"
    with pytest.raises(PathNotFound):
        await driver.get_content("/m/a/missing")
    assert value("moorage_s3_requests_total", operation="PutObject") == puts + 1
    assert value("moorage_s3_requests_total", operation="GetObject") == gets + 2
    assert value("moorage_storage_operations_total", driver="s3", operation="get_content") == ops + 2
    assert value("moorage_storage_errors_total", driver="s3", operation="get_content") == errors  # not found: no error
    assert value("moorage_storage_operation_duration_seconds_count", driver="s3", operation="put_content") >= 1
    assert driver.request_counts()  # the driver's own attributes pass through the wrapper
