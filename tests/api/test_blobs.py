"""Blob GET/HEAD/DELETE, ranges and every upload flow, with their error paths."""

from __future__ import annotations

import hashlib

from starlette.testclient import TestClient

from tests.api.conftest import make_client, push_blob, sha256

API_HEADER = "docker-distribution-api-version"


def start(client: TestClient, name: str = "team/app", **params: str) -> str:
    r = client.post(f"/v2/{name}/blobs/uploads/", params=params)
    assert r.status_code == 202, r.text
    assert r.headers["docker-upload-uuid"]
    assert r.headers["range"] == "0-0"
    assert "oci-chunk-min-length" in r.headers
    return r.headers["location"]


def test_version_check(client: TestClient) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers[API_HEADER] == "registry/2.0"


def test_monolithic_push_then_get_head(client: TestClient) -> None:
    data = b"hello world" * 1000
    digest = push_blob(client, "team/app", data)
    r = client.head(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["accept-ranges"] == "bytes"
    r = client.get(f"/v2/team/app/blobs/{digest}")
    assert r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    r = client.get(f"/v2/team/app/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


def test_unknown_blob_and_other_repository(client: TestClient) -> None:
    digest = push_blob(client, "team/app", b"abc")
    r = client.get(f"/v2/team/other/blobs/{digest}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert r.headers[API_HEADER] == "registry/2.0"
    r = client.head(f"/v2/team/app/blobs/{sha256(b'nope')}")
    assert r.status_code == 404


def test_ranges(client: TestClient) -> None:
    data = bytes(range(256)) * 40
    digest = push_blob(client, "r/x", data)
    r = client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.content == data[-5:]
    r = client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == data[10000:]
    r = client.get(f"/v2/r/x/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert r.json()["errors"][0]["code"] == "RANGE_INVALID"


def test_chunked_upload_with_and_without_bytes_prefix(client: TestClient) -> None:
    data = b"0123456789" * 100
    location = start(client)
    r = client.patch(location, content=data[:300], headers={"Content-Range": "0-299"})
    assert r.status_code == 202
    assert r.headers["range"] == "0-299"
    r = client.patch(r.headers["location"], content=data[300:700], headers={"Content-Range": "bytes=300-699"})
    assert r.status_code == 202 and r.headers["range"] == "0-699"
    r = client.get(location)
    assert r.status_code == 204 and r.headers["range"] == "0-699"
    r = client.put(location, params={"digest": sha256(data)}, content=data[700:],
                   headers={"Content-Range": f"700-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(data)
    assert r.headers["location"].endswith(f"/v2/team/app/blobs/{sha256(data)}")
    assert client.get(f"/v2/team/app/blobs/{sha256(data)}").content == data
    assert client.get(location).status_code == 404


def test_out_of_order_chunk_leaves_upload_unchanged(client: TestClient) -> None:
    location = start(client)
    client.patch(location, content=b"abcd", headers={"Content-Range": "0-3"})
    r = client.patch(location, content=b"zz", headers={"Content-Range": "10-11"})
    assert r.status_code == 416
    assert r.json()["errors"][0]["code"] == "RANGE_INVALID"
    assert client.get(location).headers["range"] == "0-3"
    r = client.put(location, params={"digest": sha256(b"abcdef")}, content=b"ef")
    assert r.status_code == 201


def test_streamed_patch_without_content_range(client: TestClient) -> None:
    data = hashlib.sha512(b"x").digest() * 50000  # ~3 MiB, streamed like the docker daemon
    location = start(client)

    def body():
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    r = client.patch(location, content=body())
    assert r.status_code == 202
    assert r.headers["range"] == f"0-{len(data) - 1}"
    r = client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert client.get(f"/v2/team/app/blobs/{sha256(data)}").content == data


def test_large_upload_crosses_batches(client: TestClient) -> None:
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB: several hashing batches
    location = start(client)
    r = client.put(location, params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201


def test_wrong_digest_is_refused_and_nothing_published(client: TestClient) -> None:
    location = start(client)
    wrong = sha256(b"something else")
    r = client.put(location, params={"digest": wrong}, content=b"actual")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.head(f"/v2/team/app/blobs/{wrong}").status_code == 404
    r = client.post(f"/v2/team/app/blobs/uploads/?digest={wrong}", content=b"other")
    assert r.status_code == 400


def test_put_requires_digest(client: TestClient) -> None:
    location = start(client)
    r = client.put(location, content=b"abc")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    r = client.put(location, params={"digest": "sha256:xyz"}, content=b"abc")
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_sha512_upload(client: TestClient) -> None:
    data = b"five-twelve"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = start(client, **{"digest-algorithm": "sha512"})
    client.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    r = client.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/team/app/blobs/{digest}").content == data
    # and a sha512 digest on an upload that was hashed with sha256 is re-hashed from storage
    location = start(client)
    client.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert client.put(location, params={"digest": digest}).status_code == 201


def test_unknown_digest_algorithm(client: TestClient) -> None:
    r = client.post("/v2/team/app/blobs/uploads/", params={"digest-algorithm": "md5"})
    assert r.status_code == 400
    r = client.get("/v2/team/app/blobs/md5:" + "0" * 32)
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_cancel_and_unknown_upload(client: TestClient) -> None:
    location = start(client)
    assert client.delete(location).status_code == 204
    r = client.patch(location, content=b"x")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    r = client.get("/v2/team/app/blobs/uploads/../../../etc")
    assert r.status_code in (400, 404)
    r = client.get("/v2/team/app/blobs/uploads/not-a-uuid")
    assert r.status_code == 404


def test_upload_survives_restart(tmp_path) -> None:
    data = b"A" * 1000 + b"B" * 1000
    with make_client(tmp_path) as first:
        location = start(first)
        first.patch(location, content=data[:1000], headers={"Content-Range": "0-999"})
    with make_client(tmp_path) as second:
        assert second.get(location).headers["range"] == "0-999"
        second.patch(location, content=data[1000:], headers={"Content-Range": "1000-1999"})
        assert second.put(location, params={"digest": sha256(data)}).status_code == 201


def test_resume_without_hash_state_rehashes(tmp_path) -> None:
    data = b"payload" * 100
    with make_client(tmp_path) as c:
        location = start(c)
        c.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
        for state in tmp_path.glob("docker/registry/v2/repositories/*/*/_uploads/*/hashstates/*/*"):
            state.unlink()
        assert c.put(location, params={"digest": sha256(data)}).status_code == 201


def test_mount(client: TestClient) -> None:
    digest = push_blob(client, "src/repo", b"shared layer")
    r = client.post("/v2/dst/repo/blobs/uploads/", params={"mount": digest, "from": "src/repo"})
    assert r.status_code == 201
    assert r.headers["docker-content-digest"] == digest
    assert client.get(f"/v2/dst/repo/blobs/{digest}").content == b"shared layer"
    # from a repository that lacks it: a normal upload starts
    r = client.post("/v2/dst/other/blobs/uploads/", params={"mount": digest, "from": "nowhere/repo"})
    assert r.status_code == 202
    # without from: the blob exists somewhere in the registry
    r = client.post("/v2/dst/third/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201
    r = client.post("/v2/dst/third/blobs/uploads/", params={"mount": sha256(b"absent")})
    assert r.status_code == 202


def test_delete_blob(client: TestClient) -> None:
    digest = push_blob(client, "team/app", b"to delete")
    r = client.delete(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 202
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert client.delete(f"/v2/team/app/blobs/{digest}").status_code == 404


def test_delete_disabled(tmp_path) -> None:
    with make_client(tmp_path, storage={"filesystem": {"rootdirectory": str(tmp_path)},
                                        "delete": {"enabled": False}}) as c:
        digest = push_blob(c, "team/app", b"keep")
        r = c.delete(f"/v2/team/app/blobs/{digest}")
        assert r.status_code == 405
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_read_only(tmp_path) -> None:
    with make_client(tmp_path, storage={"filesystem": {"rootdirectory": str(tmp_path)},
                                        "maintenance": {"readonly": {"enabled": True}}}) as c:
        r = c.post("/v2/team/app/blobs/uploads/")
        assert r.status_code == 405
        assert c.get("/v2/").status_code == 200


def test_invalid_names(client: TestClient) -> None:
    for path in ("/v2/Team/app/tags/list", "/v2/a..b/tags/list", "/v2/a/%2e%2e/tags/list",
                 "/v2/" + "a" * 256 + "/tags/list", "/v2/-a/tags/list", "/v2/a//b/tags/list"):
        r = client.get(path)
        assert r.status_code == 400, path
        assert r.json()["errors"][0]["code"] == "NAME_INVALID"


def test_unknown_endpoint_and_method(client: TestClient) -> None:
    r = client.get("/v2/team/app/nothing")
    assert r.status_code == 404
    assert r.headers[API_HEADER] == "registry/2.0"
    r = client.post("/v2/team/app/tags/list")
    assert r.status_code == 405
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_purge_removes_only_abandoned_uploads(tmp_path) -> None:
    import asyncio
    import os
    import time

    from storage.driver.filesystem import FilesystemDriver
    from storage.purge import purge_uploads

    with make_client(tmp_path) as c:
        old = start(c, "team/app")
        fresh = start(c, "other/repo")
    old_id = old.rsplit("/", 1)[1]
    started = next(tmp_path.glob(f"docker/registry/v2/repositories/team/app/_uploads/{old_id}/startedat"))
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(started, (week_ago, week_ago))
    driver = FilesystemDriver(str(tmp_path))
    assert asyncio.run(purge_uploads(driver, 7 * 24 * 3600, dry_run=True))
    purged = asyncio.run(purge_uploads(driver, 7 * 24 * 3600))
    assert [p.rsplit("/", 1)[1] for p in purged] == [old_id]
    with make_client(tmp_path) as c:
        assert c.get(old).status_code == 404
        assert c.get(fresh).status_code == 204


def test_the_first_upload_purge_starts_at_a_random_moment_within_an_hour(tmp_path, monkeypatch) -> None:
    """As Distribution's: a start walks no repository, and replicas started together purge at different
    moments; a shorter ``interval`` bounds the delay too."""
    import asyncio

    from registry.config import parse
    from registry.http import app as app_module
    from registry.writes.writer import RepositoryWriter

    drawn: list[tuple[float, float]] = []
    monkeypatch.setattr(app_module.random, "uniform", lambda low, high: drawn.append((low, high)) or 0.3)
    rounds: list[float] = []

    async def purge(self: RepositoryWriter, older_than: float, dry_run: bool = False) -> list[str]:
        rounds.append(older_than)
        return []

    monkeypatch.setattr(RepositoryWriter, "purge_uploads", purge)

    async def scenario(interval: str) -> tuple[int, int]:
        app = app_module.create_app(parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path)},
                                                       "maintenance": {"uploadpurging": {"interval": interval}}}}))
        rounds.clear()
        task = asyncio.create_task(app.purge_periodically())
        await asyncio.sleep(0.1)
        at_start = len(rounds)
        await asyncio.sleep(0.4)
        task.cancel()
        return at_start, len(rounds)

    assert asyncio.run(scenario("24h")) == (0, 1)
    assert drawn == [(0, 3600.0)]
    asyncio.run(scenario("10m"))
    assert drawn[-1] == (0, 600.0)
