"""``moorage serve`` prints one line at start-up: version, URL, storage, auth mode, config file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import free_port

pytestmark = pytest.mark.e2e


def test_moorage_serve_prints_one_startup_line(tmp_path: Path) -> None:
    """A real ``moorage serve``: the line is printed once, before the server answers."""
    port = free_port()
    path = tmp_path / "config.yml"
    path.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    moorage = Path(sys.executable).with_name("moorage")
    env = {**os.environ, "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    process = subprocess.Popen([str(moorage), "serve", str(path)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("moorage serve did not answer within 30 s")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    lines = [line for line in stderr.splitlines() if " serving " in line]
    assert len(lines) == 1, stderr
    assert f"moorage {version('moorage')} serving http://127.0.0.1:{port}/; storage filesystem {tmp_path / 'data'}; " \
        f"auth none; config {path} + REGISTRY_HTTP_ADDR" in lines[0], lines[0]
