"""Hostile or malformed requests (issue 14, defects 1, 5 and 6): the spec's error, and nothing changed."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from registry.config import parse
from registry.http.app import create_app
from tests.api.conftest import OCI_MANIFEST, image_manifest, make_client, push_blob, put_manifest, sha256


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["errors"][0]["code"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def client(root: Path):  # type: ignore[no-untyped-def]
    with make_client(root) as c:
        yield c


# --- defect 1: deeply nested manifests ------------------------------------------------------------


@pytest.mark.parametrize("opening,closing", [(b"[", b"]"), (b'{"a":', b"}")])
def test_deeply_nested_manifest_is_invalid_not_500(client: TestClient, opening: bytes, closing: bytes) -> None:
    body = opening * 100_000 + closing * 100_000
    r = put_manifest(client, "team/app", "deep", body)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"


def test_nesting_inside_a_string_is_not_depth(client: TestClient) -> None:
    """Brackets inside JSON strings (annotations) do not count as nesting."""
    body = image_manifest(client, "team/app", annotations={"x": "[" * 10_000, "y": '\\"{' * 1000})
    assert put_manifest(client, "team/app", "annotated", body).status_code == 201


# --- defect 5: a refused PATCH changes nothing ----------------------------------------------------


def upload_data(root: Path, location: str) -> bytes:
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    path = root / "docker/registry/v2/repositories/team/app/_uploads" / upload_id / "data"
    return path.read_bytes() if path.exists() else b""


def test_refused_patch_leaves_the_upload_unchanged(client: TestClient, root: Path) -> None:
    r = client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    r = client.patch(location, content=b"first", headers={"Content-Range": "0-4"})
    assert r.status_code == 202

    def chunked():  # type: ignore[no-untyped-def]
        yield b"0123456789"  # ten bytes where Content-Range announces three

    r = client.patch(location, content=chunked(), headers={"Content-Range": "5-7"})
    assert r.status_code == 400 and error_code(r) == "SIZE_INVALID"
    assert upload_data(root, location) == b"first"
    r = client.get(location)
    assert r.status_code == 204 and r.headers["Range"] == "0-4"
    # the session goes on from where it was
    r = client.patch(location, content=b"-next", headers={"Content-Range": "5-9"})
    assert r.status_code == 202
    r = client.put(location, params={"digest": sha256(b"first-next")})
    assert r.status_code == 201, r.text


def test_refused_short_patch_leaves_the_upload_unchanged(client: TestClient, root: Path) -> None:
    location = client.post("/v2/team/app/blobs/uploads/").headers["Location"]

    def chunked():  # type: ignore[no-untyped-def]
        yield b"ab"

    r = client.patch(location, content=chunked(), headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and error_code(r) == "SIZE_INVALID"
    assert upload_data(root, location) == b""
    assert client.get(location).headers["Range"] == "0-0"


# --- defect 6: wrong codes and leftovers ----------------------------------------------------------


@pytest.mark.parametrize("tag", ["a" * 130, ".hidden", "-x", "caf\u00e9", "a+b"])
def test_invalid_tag_in_manifest_path_is_tag_invalid(client: TestClient, tag: str) -> None:
    body = image_manifest(client, "team/app")
    r = put_manifest(client, "team/app", tag, body)
    assert r.status_code == 400, r.text
    assert error_code(r) == "TAG_INVALID"


def test_malformed_digest_reference_stays_digest_invalid(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    r = put_manifest(client, "team/app", "sha256:xyz", body)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


@pytest.mark.parametrize("path", [
    "/v2/team/app/blobs/sha256%2F" + "a" * 64,
    "/v2/team/app/blobs/sha256%2f" + "a" * 64,
    "/v2/team/app/referrers/sha256%2F" + "a" * 64,
    "/v2/team/app/manifests/sha256:%2F" + "a" * 63,
])
def test_digest_with_encoded_slash_is_digest_invalid(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400, r.text
    assert error_code(r) == "DIGEST_INVALID"


def test_encoded_characters_elsewhere_still_route(client: TestClient) -> None:
    data = b"hello"
    digest = sha256(data)
    assert client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", content=data).status_code == 201
    assert client.get(f"/v2/team/app/blobs/{digest.replace(':', '%3A')}").content == data


@pytest.mark.parametrize("size", [10**400, 2**63, -1])
def test_descriptor_size_beyond_int64_is_refused(client: TestClient, size: int) -> None:
    doc = json.loads(image_manifest(client, "team/app"))
    doc["layers"][0]["size"] = size
    r = put_manifest(client, "team/app", "huge", json.dumps(doc).encode())
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"


def test_largest_int64_size_is_accepted(client: TestClient) -> None:
    doc = json.loads(image_manifest(client, "team/app"))
    doc["layers"][0]["size"] = 2**63 - 1
    r = put_manifest(client, "team/app", "big", json.dumps(doc).encode(), OCI_MANIFEST)
    assert r.status_code == 201, r.text


def test_monolithic_upload_with_wrong_digest_leaves_nothing(client: TestClient, root: Path) -> None:
    wrong = sha256(b"something else")
    r = client.post(f"/v2/team/app/blobs/uploads/?digest={wrong}", content=b"actual bytes")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    uploads = root / "docker/registry/v2/repositories/team/app/_uploads"
    assert not uploads.exists() or os.listdir(uploads) == []
    assert client.head(f"/v2/team/app/blobs/{wrong}").status_code == 404


def test_an_encoded_slash_does_not_make_another_repository(client: TestClient) -> None:
    """``t%2Fa`` is not ``t/a``: names are matched as sent, and none of their characters needs an escape."""
    push_blob(client, "t/a", b"layer")
    for path in ("/v2/t%2Fa/tags/list", "/v2/t%2fa/blobs/uploads/", "/v2/t%2Fa/manifests/latest"):
        r = client.request("POST" if path.endswith("uploads/") else "GET", path)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "NAME_INVALID"


def test_http_1_1_without_host_and_unknown_versions_are_refused(tmp_path: Path) -> None:
    """RFC 9112: a server answers 400 to an HTTP/1.1 request without Host; an HTTP/2.0 request line on an
    HTTP/1 connection is not HTTP/2 (505). Both in the registry's JSON error format."""
    app = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path)}}}))

    async def call(scope_extra: dict) -> tuple[int, dict, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/v2/", "raw_path": b"/v2/", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"registry.test")], "client": ("127.0.0.1", 1), "server": ("x", 80),
                 **scope_extra}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        head = sent[0]
        return head["status"], dict(head["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

    assert (asyncio.run(call({})))[0] == 200
    assert (asyncio.run(call({"http_version": "1.0", "headers": []})))[0] == 200  # Host is HTTP/1.1's
    status, headers, body = asyncio.run(call({"headers": [(b"user-agent", b"x")]}))
    assert status == 400 and headers[b"content-type"] == b"application/json"
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED" and b"Host" in body
    status, headers, body = asyncio.run(call({"http_version": "2.0"}))
    assert status == 505 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    assert headers[b"connection"] == b"close"
