"""A kill -9 or a full disk in the middle of an upload never leaves a wrong blob under a digest."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import mounted_tmpfs
from .servers import RegistryProcess

MiB = 1 << 20


def blob_files(root: Path) -> list[Path]:
    return list(root.glob("docker/registry/v2/blobs/*/*/*/data"))


def slow_body(data: bytes, sent: list[int], pause_after: int) -> Iterator[bytes]:
    """Stream ``data`` in 256 KiB pieces; stall (forever, until the server dies) after ``pause_after``."""
    for i in range(0, len(data), 256 * 1024):
        if i >= pause_after:
            time.sleep(30)
        piece = data[i : i + 256 * 1024]
        sent[0] += len(piece)
        yield piece


def test_kill_9_mid_upload_then_resume(start_moorage) -> None:
    server: RegistryProcess = start_moorage()
    data = os.urandom(24 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.http() as http:
        location = http.post("/v2/crash/app/blobs/uploads/").headers["location"]
    sent = [0]

    def upload() -> None:
        try:
            httpx.patch(location, content=slow_body(data, sent, 16 * MiB), timeout=60)
        except httpx.HTTPError:
            pass  # the server is killed under it

    worker = threading.Thread(target=upload, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while sent[0] < 16 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the server write what it received
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    server.proc = None
    assert blob_files(server.root) == []

    server.start()
    with server.http() as http:
        status = http.get(location)
        assert status.status_code == 204
        offset = int(status.headers["range"].split("-")[1]) + 1
        assert 0 < offset <= 16 * MiB
        # nothing is published under the digest before the upload is finished and verified
        assert http.head(f"/v2/crash/app/blobs/{digest}").status_code == 404
        r = http.patch(location, content=data[offset:], headers={"Content-Range": f"{offset}-{len(data) - 1}"})
        assert r.status_code == 202, r.text
        r = http.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text
        got = http.get(f"/v2/crash/app/blobs/{digest}")
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, so the disk fills up mid-upload."""
    with mounted_tmpfs(tmp_path / "small", "8m", "full-disk") as mountpoint:
        yield mountpoint


def test_full_disk_mid_upload(start_moorage, small_disk: Path) -> None:
    server: RegistryProcess = start_moorage(root=small_disk)
    data = os.urandom(12 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.http() as http:
        location = http.post("/v2/full/app/blobs/uploads/").headers["location"]
        r = http.put(location, params={"digest": digest}, content=data)
        assert r.status_code == 507, r.text
        assert r.json()["errors"][0]["code"] == "UNKNOWN"
        assert http.head(f"/v2/full/app/blobs/{digest}").status_code == 404
        assert blob_files(small_disk) == []
        # cancelling frees the space and the registry keeps working
        assert http.delete(location).status_code == 204
        small = b"fits on the disk"
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        r = http.post("/v2/full/app/blobs/uploads/", params={"digest": small_digest}, content=small)
        assert r.status_code == 201
        assert http.get(f"/v2/full/app/blobs/{small_digest}").content == small
