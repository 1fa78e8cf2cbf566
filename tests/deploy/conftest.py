"""Fixtures shared by the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import free_port
from tests.e2e.servers import MOORAGE, RegistryProcess, make_server, moorage_executable


@pytest.fixture
def moorage(tmp_path: Path) -> Iterator[Any]:
    """A factory of started `moorage serve` processes on free loopback ports: ``factory(http, **sections)``
    with the ``http`` section's keys and any other top-level sections; each is stopped afterwards."""
    exe = moorage_executable()
    if exe is None:
        pytest.fail("the `moorage` console script is not installed (pip install -e '.[test]')")
    started: list[RegistryProcess] = []

    def factory(http: dict[str, Any], **extra: Any) -> RegistryProcess:
        port = free_port()
        server = make_server(MOORAGE, exe, tmp_path / f"moorage-{len(started)}", port=port,
                             config={"http": {"addr": f"127.0.0.1:{port}", **http}, **extra})
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()
