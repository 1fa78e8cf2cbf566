"""Fixtures: Moorage's ASGI app on a temporary filesystem root, driven through httpx like the suite.

By default requests go through Starlette's TestClient. With ``MOORAGE_CONFORMANCE_LIVE=1`` every
registry is served by a real uvicorn on 127.0.0.1 instead, so the checks also cover the HTTP layer
(chunked bodies, HEAD, Content-Length on 204s, absolute Location headers).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from registry.config import parse
from registry.http.app import create_app
from tests.conformance.ociapi import BASE, Api

REPO1 = "conformance/repo1"  # the suite's default OCI_REPO1
REPO2 = "conformance/repo2"  # the suite's default OCI_REPO2 (cross-mount source)
LIVE = os.environ.get("MOORAGE_CONFORMANCE_LIVE", "") not in ("", "0", "false")


@contextmanager
def make_client(root: Path, **overrides: Any) -> Iterator[httpx.Client]:
    """A client for a new registry rooted at ``root`` (``overrides`` are top-level config sections)."""
    raw: dict[str, Any] = {"storage": {"filesystem": {"rootdirectory": str(root)}}}
    raw.update(overrides)
    app = create_app(parse(raw))
    if not LIVE:
        with TestClient(app, base_url=BASE) as client:
            yield client
        return
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """A fresh registry per test."""
    with make_client(tmp_path / "root") as client:
        yield Api(client)


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One registry for a whole module: the suite's specs run in order against shared state."""
    with make_client(tmp_path_factory.mktemp("registry")) as client:
        yield Api(client)


@pytest.fixture(scope="session")
def classic_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The classic suite's four workflows (pull, push, discovery, management) share one registry."""
    with make_client(tmp_path_factory.mktemp("classic")) as client:
        yield Api(client)
