"""The stores that cost S3 requests per registry operation (uploads, catalog, referrers) on every backend
(the driver calls they rely on are in the driver suite, ``test_driver_suite.py``).

Every upload request is served by a new store on a new driver instance, as another replica would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from storage import blobs, paths
from storage.blobs import BlobStore, BlobUnknown
from storage.catalog import Catalog
from storage.digests import Digest, digest_bytes, new_hasher, parse_digest
from storage.driver import PathNotFound, StorageDriver
from storage.driver.s3 import S3Driver
from storage.manifests import ManifestStore
from storage.referrers import ReferrersIndex
from storage.uploads import STATES_KEPT, DigestMismatch, OffsetMismatch, UploadInfo, UploadStore, UploadUnknown
from tests.storage.conftest import S3_BACKENDS, DriverFactory
from tests.storage.repositories import TRICKY, catalog_fixture, make_repository

pytestmark = pytest.mark.anyio
MiB = 1 << 20


async def chunks(data: bytes, size: int = 64 << 10) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def store(driver: StorageDriver) -> UploadStore:
    return UploadStore(driver, BlobStore(driver))


async def states(driver: StorageDriver, upload: UploadInfo) -> list[str]:
    try:
        return await driver.list_nested(f"{paths.upload_dir(upload.name, upload.id)}/hashstates", 2)
    except PathNotFound:
        return []


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


# --- uploads ----------------------------------------------------------------------------------------


async def test_chunked_upload_across_replicas_keeps_its_newest_hash_state(make_driver: DriverFactory,
                                                                          backend: str) -> None:
    """Each request saves the hash state at its end; on local disk the earlier one is deleted at once, in a
    bucket up to STATES_KEPT of them are deleted together (a request less per chunk)."""
    content = random.Random(1).randbytes(11 * 10_000 + 7)
    created = await store(make_driver()).create("team/app")
    assert await states(make_driver(), created) == []  # a new sha256 session needs no state
    offset = 0
    for n in range(11):
        uploads = store(make_driver())
        upload = await uploads.info("team/app", created.id)
        assert (upload.size, upload.algorithm) == (offset, "sha256")
        offset = await uploads.append(upload, chunks(content[offset : offset + 10_000]), start=offset,
                                      expected_length=10_000)
        kept = sorted(int(state.rpartition("/")[2]) for state in await states(make_driver(), upload))
        assert kept[-1] == offset
        assert len(kept) == 1 if backend == "filesystem" else len(kept) == (n % STATES_KEPT) + 1
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    assert upload.states is None or ("sha256", 110_000) in upload.states  # None: not read (local files)
    assert await uploads.commit(upload, digest_of(content), chunks(content[110_000:])) == len(content)
    driver = make_driver()
    assert await driver.get_content(paths.blob_data(digest_of(content))) == content
    assert await BlobStore(driver).stat_in_repository("team/app", digest_of(content))
    with pytest.raises(UploadUnknown):
        await store(driver).info("team/app", created.id)


async def test_other_algorithm_is_kept_across_replicas(make_driver: DriverFactory) -> None:
    content = b"sha512 content" * 1000
    created = await store(make_driver()).create("team/app", "sha512")
    assert await states(make_driver(), created) == ["sha512-moorage/0"]
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    assert upload.algorithm == "sha512"
    await uploads.append(upload, chunks(content[:5000]))
    assert (await states(make_driver(), upload))[-1] == "sha512-moorage/5000"
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    assert (upload.algorithm, upload.size) == ("sha512", 5000)
    await uploads.commit(upload, digest_of(content, "sha512"), chunks(content[5000:]))
    assert await make_driver().get_content(paths.blob_data(digest_of(content, "sha512"))) == content


async def test_bytes_without_a_matching_state_are_hashed_again(make_driver: DriverFactory, backend: str) -> None:
    """A request that died after writing data but before saving its state (or another registry).

    Local files, and a session in a bucket that never filled a part (a plain object), are hashed again;
    an open S3 multipart session cannot be read back before it is committed, so the client has to start
    over - but never gets a blob under a digest that was not verified."""
    small = b"a" * 70_000 + b"b" * 30_000
    big = b"a" * 70_000 + b"b" * (6 * MiB)  # past the S3 test driver's 5 MiB parts
    for content in (small, big):
        await died_before_its_state(make_driver, backend, content)


async def died_before_its_state(make_driver: DriverFactory, backend: str, content: bytes) -> None:
    created = await store(make_driver()).create("team/app")
    uploads = store(make_driver())
    await uploads.append(await uploads.info("team/app", created.id), chunks(content[:70_000]))
    driver = make_driver()
    writer = await driver.writer(paths.upload_data("team/app", created.id), append=True)
    await writer.write(content[70_000:])
    await writer.close()
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    assert await states(driver, upload) == ["sha256-moorage/70000"]
    if backend == "filesystem" or len(content) < 5 * MiB:
        assert upload.size == len(content) and upload.states in (None, frozenset({("sha256", 70_000)}))
        await uploads.commit(upload, digest_of(content), None)
        assert await make_driver().get_content(paths.blob_data(digest_of(content))) == content
    else:
        assert upload.size == 70_000  # what the last saved state covers: the dead request's bytes are not
        with pytest.raises(DigestMismatch):
            await uploads.commit(upload, digest_of(content), None)
        with pytest.raises(PathNotFound):
            await make_driver().stat(paths.blob_data(digest_of(content)))


async def test_old_sessions_with_a_state_at_zero_still_work(make_driver: DriverFactory) -> None:
    """Sessions created before sha256 sessions stopped saving their empty state."""
    created = await store(make_driver()).create("team/app")
    driver = make_driver()
    empty = UploadStore(driver, BlobStore(driver))
    await driver.put_content(paths.upload_hashstate("team/app", created.id, "sha256", 0),
                             new_hasher("sha256").serialize())
    upload = await empty.info("team/app", created.id)
    assert upload.states in (None, frozenset({("sha256", 0)}))
    await empty.append(upload, chunks(b"x" * 10))
    assert (await states(make_driver(), upload))[-1] == "sha256-moorage/10"


async def test_digest_mismatch_keeps_the_session(make_driver: DriverFactory) -> None:
    """All of the data in the refused request: hashed by hashlib (no state saved); the retry re-hashes it."""
    content = b"right" * 1000
    created = await store(make_driver()).create("team/app")
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    with pytest.raises(DigestMismatch):
        await uploads.commit(upload, digest_of(b"wrong"), chunks(content))
    uploads = store(make_driver())
    upload = await uploads.info("team/app", created.id)
    assert upload.size == len(content)
    assert await states(make_driver(), upload) == []
    assert await uploads.commit(upload, digest_of(content), None) == len(content)
    assert await make_driver().get_content(paths.blob_data(digest_of(content))) == content


async def test_digest_mismatch_after_a_patch_saves_the_state(make_driver: DriverFactory) -> None:
    content = b"right" * 1000
    uploads = store(make_driver())
    created = await uploads.create("team/app")
    await uploads.append(created, chunks(content[:3000]))
    with pytest.raises(DigestMismatch):
        await uploads.commit(created, digest_of(b"wrong"), chunks(content[3000:]))
    upload = await store(make_driver()).info("team/app", created.id)
    assert (await states(make_driver(), upload))[-1] == f"sha256-moorage/{len(content)}"
    assert await store(make_driver()).commit(upload, digest_of(content), None) == len(content)


async def test_empty_blob_without_body(make_driver: DriverFactory) -> None:
    uploads = store(make_driver())
    created = await uploads.create("team/app")
    await uploads.commit(created, digest_of(b""), None)
    assert await make_driver().get_content(paths.blob_data(digest_of(b""))) == b""
    created = await uploads.create("team/app")  # the blob exists already: the session just goes
    upload = await store(make_driver()).info("team/app", created.id)
    await store(make_driver()).commit(upload, digest_of(b""), None)
    with pytest.raises(UploadUnknown):
        await store(make_driver()).info("team/app", created.id)


async def test_a_link_another_replica_removed_is_not_answered_from_the_cache(
    make_driver: DriverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob-descriptor cache hears nothing of a DELETE of a blob through another replica: a HEAD (whose
    200 lets a client skip its upload) asks storage at once, anything else after ``LINK_TRUST``."""
    uploads = store(make_driver())
    created = await uploads.create("team/app")
    await uploads.commit(created, digest_of(b"layer"), chunks(b"layer"))
    here, there = BlobStore(make_driver()), BlobStore(make_driver())
    await here.link("team/app", digest_of(b"layer"))
    assert await here.stat_in_repository("team/app", digest_of(b"layer")) == 5
    await there.unlink("team/app", digest_of(b"layer"))
    with pytest.raises(BlobUnknown):
        await here.stat_in_repository("team/app", digest_of(b"layer"), check=True)
    await here.link("team/app", digest_of(b"layer"))
    await there.unlink("team/app", digest_of(b"layer"))
    monkeypatch.setattr(blobs, "LINK_TRUST", -1.0)  # as if LINK_TRUST had passed
    with pytest.raises(BlobUnknown):
        await here.stat_in_repository("team/app", digest_of(b"layer"))


async def test_unknown_cancelled_and_mismatched_uploads(make_driver: DriverFactory) -> None:
    uploads = store(make_driver())
    for bad in ("nope", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(UploadUnknown):
            await uploads.info("team/app", bad)
    created = await uploads.create("team/app")
    upload = await store(make_driver()).info("team/app", created.id)
    with pytest.raises(OffsetMismatch):
        await uploads.append(upload, chunks(b"x"), start=5)
    await store(make_driver()).cancel("team/app", created.id)
    with pytest.raises(UploadUnknown):
        await store(make_driver()).info("team/app", created.id)


async def test_info_survives_a_state_deleted_while_it_reads(make_driver: DriverFactory) -> None:
    """Reading a session while another request replaces its hash state never answers 'unknown'."""
    uploads = store(make_driver())
    created = await uploads.create("team/app")
    upload = await uploads.info("team/app", created.id)
    await uploads.append(upload, chunks(b"x" * 100))

    reader, writer = store(make_driver()), store(make_driver())

    async def reads() -> None:
        for _ in range(10):
            assert (await reader.info("team/app", created.id)).size >= 100

    async def writes() -> None:
        for _ in range(10):
            await writer.append(await writer.info("team/app", created.id), chunks(b"y"))

    await asyncio.gather(reads(), writes())


# --- S3 request counts ------------------------------------------------------------------------------


def counted(driver: StorageDriver) -> Callable[[], dict[str, int]]:
    assert isinstance(driver, S3Driver)
    driver.request_counts(reset=True)
    return lambda: driver.request_counts(reset=True)


@pytest.mark.parametrize("backend", S3_BACKENDS)
async def test_s3_requests_per_upload_request(make_driver: DriverFactory, backend: str) -> None:
    """Every request of a chunked upload, counted: nothing is looked for that the session's state names."""
    driver = make_driver()
    uploads = store(driver)
    cost = counted(driver)
    created = await uploads.create("team/app")
    assert cost() == {"PutObject": 1}  # startedat
    upload = await uploads.info("team/app", created.id)
    assert cost() == {"ListObjectsV2": 1}  # existence, size, algorithm and states in one listing
    await uploads.append(upload, chunks(b"p" * 1000))
    assert cost() == {"PutObject": 2}  # the bytes (a plain object: less than a part) and the state
    upload = await uploads.info("team/app", created.id)
    cost()
    await uploads.append(upload, chunks(b"q" * 1000))
    # the state (with the session's token), the 1000 bytes so far (too few to be copied as a part), the
    # 2000 bytes and the new state
    assert cost() == {"GetObject": 2, "PutObject": 2}
    upload = await uploads.info("team/app", created.id)
    cost()
    await uploads.commit(upload, digest_of(b"p" * 1000 + b"q" * 1000), None)
    # the state; the GC lease (a view of it is read once per few seconds); moving the blob; its link;
    # the session's directory, listed and deleted, and the multipart uploads requests that died left there
    assert cost() == {"GetObject": 2, "CopyObject": 1, "DeleteObject": 1, "PutObject": 1, "ListObjectsV2": 1,
                      "DeleteObjects": 1, "ListMultipartUploads": 1}


@pytest.mark.parametrize("backend", S3_BACKENDS)
async def test_s3_bytes_go_once_when_chunks_fill_parts(make_driver: DriverFactory, backend: str) -> None:
    """A 12 MiB blob in one PATCH (docker) then an empty PUT: a 5 MiB part, another, the 2 MiB tail staged
    and copied into the last part inside S3: the registry sends 12 MiB, once."""
    driver = make_driver()
    uploads = store(driver)
    sent: list[int] = []
    assert isinstance(driver, S3Driver)
    for operation in ("UploadPart", "PutObject"):
        driver.client.meta.events.register(f"before-send.s3.{operation}", lambda request, **_: sent.append(
            int(request.headers.get("Content-Length", 0))))
    content = random.Random(12).randbytes(12 * MiB)
    created = await uploads.create("team/app")
    sent.clear()
    await uploads.append(await uploads.info("team/app", created.id), chunks(content, MiB))
    upload = await uploads.info("team/app", created.id)
    cost = counted(driver)
    assert await uploads.commit(upload, digest_of(content), None) == len(content)
    assert cost()["UploadPartCopy"] == 1 + 3  # the tail into the last part; the move (5 MiB copy parts here)
    assert sum(sent) - len(content) < 4096  # besides the bytes: the hash states and links
    assert await driver.get_content(paths.blob_data(digest_of(content))) == content


# --- catalog ----------------------------------------------------------------------------------------

async def walk_catalog(catalog: Catalog, n: int) -> list[str]:
    names: list[str] = []
    last = None
    while True:
        page, more = await catalog.page(last, n)
        names += page
        if not more:
            return names
        assert page
        last = page[-1]


@pytest.mark.parametrize("keys_per_request", [1000, 1, 3])
async def test_catalog_order_and_pages(driver: StorageDriver, keys_per_request: int) -> None:
    await catalog_fixture(driver, layers=3)
    catalog = Catalog(driver, keys_per_request=keys_per_request)
    assert (await catalog.page(None, 100)) == (sorted(TRICKY), False)
    for n in (1, 2, 5, 18):
        assert await walk_catalog(catalog, n) == sorted(TRICKY), n
    for i, last in enumerate(sorted(TRICKY)):
        assert (await catalog.page(last, 2))[0] == sorted(TRICKY)[i + 1 : i + 3], last
    assert (await catalog.page("a/", 3))[0] == ["a/0", "a/0/x", "a/1b"]  # ``last`` need not exist
    assert (await catalog.page("zz", 3)) == ([], False)


async def test_catalog_of_an_empty_registry(driver: StorageDriver) -> None:
    assert await Catalog(driver).page(None, 10) == ([], False)


@pytest.mark.parametrize("backend", S3_BACKENDS)
async def test_s3_catalog_page_costs_one_listing(make_driver: DriverFactory, backend: str) -> None:
    driver = make_driver()
    await asyncio.gather(*(make_repository(driver, f"extra/r{i:03d}", layers=2) for i in range(30)))
    await make_repository(driver, "costs/app", layers=6)
    cost = counted(driver)
    page, more = await Catalog(driver).page(None, 10)
    assert page == ["costs/app", *(f"extra/r{i:03d}" for i in range(9))] and more
    assert cost() == {"ListObjectsV2": 1}
    page, more = await Catalog(driver).page("extra/r008", 100)
    assert len(page) == 21 and not more
    assert cost() == {"ListObjectsV2": 1}
    # listing pages that end inside a repository's _layers continue past it: not one per link
    await make_repository(driver, "big", layers=40)
    cost()
    page, _ = await Catalog(driver, keys_per_request=10).page(None, 2)
    assert page == ["big", "costs/app"]
    assert cost()["ListObjectsV2"] <= 3


# --- referrers --------------------------------------------------------------------------------------


def describe(content: bytes, digest: Digest) -> tuple[Digest, dict[str, Any]] | None:
    doc = json.loads(content)
    if "subject" not in doc:
        return None
    return parse_digest(doc["subject"]["digest"]), {"digest": str(digest), "size": len(content)}


async def test_referrers_across_algorithms(driver: StorageDriver, backend: str) -> None:
    blobs = BlobStore(driver)
    manifests = ManifestStore(driver, blobs)
    index = ReferrersIndex(driver, manifests, describe)
    subject = digest_bytes(b"subject")
    expected = []
    for i, algorithm in enumerate(["sha512", "sha256", "sha256"]):
        content = json.dumps({"subject": {"digest": str(subject)}, "i": i}).encode()
        digest = digest_bytes(content, algorithm)
        await manifests.put("team/app", digest, content)  # written behind the index's back
        expected.append(str(digest))
    found = [d["digest"] for d in await index.list("team/app", subject)]
    assert found == sorted(expected, key=lambda d: d.split(":"))
    if isinstance(driver, S3Driver):
        cost = counted(driver)
        await index.list("team/app", subject)
        # revisions and referrers: one listing each; _scanned; per referrer its revision link and descriptor
        assert cost() == {"ListObjectsV2": 2, "GetObject": 1 + 2 * 3}
