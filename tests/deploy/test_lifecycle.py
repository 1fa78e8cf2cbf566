"""A real `moorage serve` process: liveness vs readiness, the debug address, graceful SIGTERM.

Each test starts its own server on loopback (ports 15600-15699), under uvicorn and granian.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.deploy.support import free_port, port_closed
from tests.e2e.servers import RegistryProcess

KB = 1024
SERVERS = ["uvicorn", "granian"]
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server", SERVERS)
def test_liveness_readiness_and_debug_health(server: str, moorage: Any) -> None:
    """Storage gone: /livez stays 200, /healthz, /readyz and the debug /debug/health answer 503; back: 200."""
    debug_port = free_port()
    reg = moorage({"server": server, "debug": {"addr": f"127.0.0.1:{debug_port}"}})
    debug = f"http://127.0.0.1:{debug_port}"
    with reg.http() as c, httpx.Client(base_url=debug, timeout=10) as d:
        assert c.get("/livez").json() == {"status": "ok"}
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        assert d.get("/debug/health").status_code == 200 and d.get("/debug/health").json() == {}
        assert d.get("/readyz").status_code == 200

        shutil.rmtree(reg.root, ignore_errors=True)
        reg.root.symlink_to(reg.root)  # the storage fails: every stat below it is ELOOP
        assert c.get("/livez").status_code == 200
        assert d.get("/livez").status_code == 200
        assert c.get("/healthz").status_code == 503
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable", ready.text
        broken = d.get("/debug/health")
        assert broken.status_code == 503 and "storagedriver_filesystem" in broken.json(), broken.text
        assert d.get("/readyz").status_code == 503

        reg.root.unlink()
        reg.root.mkdir()  # an empty storage is a healthy one
        assert c.get("/readyz").status_code == 200
        assert c.get("/healthz").status_code == 200
        assert d.get("/debug/health").json() == {}
    assert "/debug/health" not in httpx.get(f"{reg.url}/debug/health").text  # not on the main port


def slow_patch(url: str, chunks: int, chunk_size: int, delay: float, result: dict[str, Any]) -> None:
    """PATCH `chunks` chunks with `delay` seconds between them; stores the response or the error."""
    sha = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(chunks):
            data = os.urandom(chunk_size)
            sha.update(data)
            result["sent"] = result.get("sent", 0) + 1
            yield data
            time.sleep(delay)

    try:
        with httpx.Client(timeout=60) as c:
            result["response"] = c.patch(url, content=body())
    except httpx.HTTPError as e:
        result["error"] = e
    result["digest"] = "sha256:" + sha.hexdigest()


def start_upload(reg: RegistryProcess, chunks: int, delay: float) -> tuple[threading.Thread, dict[str, Any]]:
    with reg.http() as c:
        location = c.post("/v2/drain/app/blobs/uploads/").headers["Location"]
    result: dict[str, Any] = {"location": location}
    thread = threading.Thread(target=slow_patch, args=(location, chunks, 64 * KB, delay, result))
    thread.start()
    while result.get("sent", 0) < 3:
        time.sleep(0.02)
    return thread, result


def sigterm(reg: RegistryProcess) -> tuple[subprocess.Popen[bytes], float]:
    """SIGTERM to the server's process group (a prefork master and its workers); the process and when."""
    assert reg.proc is not None
    signalled = time.monotonic()
    os.killpg(reg.proc.pid, signal.SIGTERM)
    return reg.proc, signalled


@pytest.mark.parametrize(("server", "workers"), [("uvicorn", 1), ("granian", 1), ("uvicorn", 2)])
def test_sigterm_lets_an_upload_in_flight_finish(server: str, workers: int, moorage: Any) -> None:
    """SIGTERM during a slow streamed PATCH: the port closes at once, the PATCH completes (202), the
    process exits (status 0) once it is done; after a restart the upload session is completed by PUT."""
    reg = moorage({"server": server, "workers": workers, "draintimeout": "30s"})
    thread, result = start_upload(reg, chunks=40, delay=0.1)  # ~4 s of upload
    proc, signalled = sigterm(reg)
    time.sleep(0.5)
    assert port_closed("127.0.0.1", reg.port), "still accepting connections after SIGTERM"
    assert proc.poll() is None, "exited with an upload in flight"
    thread.join(30)
    assert "error" not in result, result
    patch = result["response"]
    assert patch.status_code == 202, patch.text
    assert patch.headers["Range"] == f"0-{40 * 64 * KB - 1}"
    assert proc.wait(20) == 0
    assert time.monotonic() - signalled < 20

    reg.proc = None
    reg.start()
    with reg.http() as c:
        put = c.put(result["location"], params={"digest": result["digest"]})
        assert put.status_code == 201, put.text
        assert c.head(f"/v2/drain/app/blobs/{result['digest']}").status_code == 200


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_grace_period_is_bounded(server: str, moorage: Any) -> None:
    """An upload slower than http.draintimeout is cut when the grace period ends."""
    reg = moorage({"server": server, "draintimeout": "2s"})
    thread, result = start_upload(reg, chunks=300, delay=0.1)  # ~30 s of upload
    proc, signalled = sigterm(reg)
    proc.wait(15)
    took = time.monotonic() - signalled
    assert 1.5 < took < 10, took
    thread.join(30)
    assert "error" in result or result["response"].status_code >= 500, result
    reg.proc = None
