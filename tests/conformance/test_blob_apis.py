"""Newest suite, ``TestBlobAPIs``: every upload method, mounts, cancel, ranges, well-known and bad blobs.

Run for sha256 and for sha512 (the suite's ``Data.Sha512``, on by default). After each successful upload
the suite HEADs and GETs the blob, then DELETEs it and checks a HEAD gives 404 (``Blobs.Atomic``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.conformance.conftest import REPO1, REPO2
from tests.conformance.ociapi import Api, Unsupported, expect_header, expect_status
from tests.conformance.ocidata import CHUNK_MIN, digest_of

ALGORITHMS = ["sha256", "sha512"]


def min_chunk(api: Api) -> int:
    """The chunk size the suite settles on: its 1024-byte floor or the registry's OCI-Chunk-Min-Length."""
    resp = api.do("POST", f"/v2/{REPO1}/blobs/uploads/", headers={"Content-Length": "0"})
    expect_status(resp, 202)
    header = resp.headers.get("oci-chunk-min-length", "")
    return max(CHUNK_MIN, int(header)) if header else CHUNK_MIN


def blob(size: int, algorithm: str) -> tuple[str, bytes]:
    data = os.urandom(size)
    return digest_of(data, algorithm), data


def read_back_and_delete(api: Api, dig: str, data: bytes, *repos: str) -> None:
    api.blob_head_exists(REPO1, dig, data)
    api.blob_get_exists(REPO1, dig, data)
    for repo in repos or (REPO1,):
        api.blob_delete(repo, dig)


UPLOADS: dict[str, Callable[[Api, str, bytes], object]] = {
    "post only": lambda api, dig, data: api.blob_post_only(REPO1, dig, data),
    "post+put": lambda api, dig, data: api.blob_post_put(REPO1, dig, data),
    "chunked single": lambda api, dig, data: api.blob_patch_chunked(REPO1, dig, data),
    "stream": lambda api, dig, data: api.blob_patch_stream(REPO1, dig, data),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("method", list(UPLOADS))
def test_upload_method(api: Api, method: str, algorithm: str) -> None:
    """A 512-byte blob through one upload method, then HEAD, GET, DELETE and HEAD-after-delete."""
    dig, data = blob(512, algorithm)
    UPLOADS[method](api, dig, data)
    read_back_and_delete(api, dig, data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("put_last", "out_of_order"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["chunked multi", "chunked multi and put chunk", "chunked out-of-order", "chunked out-of-order and put chunk"],
)
def test_chunked_multi(api: Api, algorithm: str, put_last: bool, out_of_order: bool) -> None:
    """Three chunks (min*3-5 bytes); out-of-order chunks MUST get 416 and a GET MUST report the range."""
    dig, data = blob(min_chunk(api) * 3 - 5, algorithm)
    api.blob_patch_chunked(REPO1, dig, data, put_last=put_last, out_of_order=out_of_order)
    read_back_and_delete(api, dig, data)


def mount_and_read_back(api: Api, algorithm: str, source: str | None) -> None:
    """A blob pushed to REPO2, mounted into REPO1 (naming ``source`` as ``from``), read there, deleted."""
    dig, data = blob(512, algorithm)
    api.push_blob(REPO2, dig, data)
    api.blob_mount(REPO1, source, dig, data)
    read_back_and_delete(api, dig, data, REPO1, REPO2)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mount_from_other_repository(api: Api, algorithm: str) -> None:
    """POST ?mount=&from= SHOULD answer 201 (202 is the suite's 'unsupported' fallback)."""
    mount_and_read_back(api, algorithm, REPO2)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mount_anonymous(api: Api, algorithm: str) -> None:
    """POST ?mount= without from (``Blobs.MountAnonymous``, on for 1.1): 201, or 202 as unsupported."""
    mount_and_read_back(api, algorithm, None)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mount_missing_falls_back_to_upload(api: Api, algorithm: str) -> None:
    """Mounting a blob the source does not have MUST NOT succeed: 202 and a normal upload."""
    dig, data = blob(512, algorithm)
    with pytest.raises(Unsupported):
        api.blob_mount(REPO1, REPO2, dig, data)
    api.blob_delete(REPO1, dig)


def test_post_cancel(api: Api) -> None:
    """DELETE of an upload session MUST answer 204 (``Blobs.UploadCancel``, on for 1.1+dev)."""
    api.blob_post_cancel(REPO1)


RANGES = [
    ("bytes=500-1499", slice(500, 1500), "bytes 500-1499/2048"),
    ("bytes=500-", slice(500, 2048), "bytes 500-2047/2048"),
    ("bytes=-500", slice(1548, 2048), "bytes 1548-2047/2048"),
    ("bytes=2000-5000", slice(2000, 2048), "bytes 2000-2047/2048"),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("header", "part", "content_range"), RANGES, ids=[r[0] for r in RANGES])
def test_range_request(api: Api, algorithm: str, header: str, part: slice, content_range: str) -> None:
    """206 with the bytes, Content-Length and Content-Range (…/2048 or …/*); a full 200 counts as failure."""
    dig, data = blob(2048, algorithm)
    api.push_blob(REPO1, dig, data)
    resp = api.blob_get(REPO1, dig, headers={"Range": header})
    expect_status(resp, 206)
    assert resp.content == data[part]
    expect_header(resp, "Content-Length", str(len(data[part])))
    got = resp.headers.get("content-range", "")
    assert got in (content_range, content_range.rsplit("/", 1)[0] + "/*"), got
    api.blob_delete(REPO1, dig)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("header", ["bytes=500-0", "bytes=5000-10000"])
def test_unsatisfiable_range(api: Api, algorithm: str, header: str) -> None:
    dig, data = blob(2048, algorithm)
    api.push_blob(REPO1, dig, data)
    expect_status(api.blob_get(REPO1, dig, headers={"Range": header}), 416)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("data", [b"", b"{}"], ids=["empty", "emptyJSON"])
@pytest.mark.parametrize("method", list(UPLOADS))
def test_well_known_blob(api: Api, algorithm: str, data: bytes, method: str) -> None:
    """The zero-byte blob (``Data.EmptyBlob``) and ``{}``; the suite pushes them with whichever method is next."""
    dig = digest_of(data, algorithm)
    UPLOADS[method](api, dig, data)
    read_back_and_delete(api, dig, data)


BAD_UPLOADS: dict[str, Callable[[Api, str, bytes], object]] = {
    "bad digest post only": lambda api, dig, data: api.blob_post_only(REPO1, dig, data, bad=True),
    "bad digest post+put": lambda api, dig, data: api.blob_post_put(REPO1, dig, data, bad=True),
    "bad digest chunked": lambda api, dig, data: api.blob_patch_chunked(REPO1, dig, data, bad=True),
    "bad digest chunked and put chunk": lambda api, dig, data: api.blob_patch_chunked(
        REPO1, dig, data, bad=True, put_last=True),
    "bad digest stream": lambda api, dig, data: api.blob_patch_stream(REPO1, dig, data, bad=True),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("method", list(BAD_UPLOADS))
def test_bad_digest_upload_is_400(api: Api, algorithm: str, method: str) -> None:
    """Content that does not match ?digest= MUST be refused with 400 (spec: DIGEST_INVALID)."""
    dig, data = blob(min_chunk(api) * 3 - 5, algorithm)
    BAD_UPLOADS[method](api, dig, data + b"oh no")
