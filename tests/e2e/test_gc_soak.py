"""The short GC soak (bench/gc_soak.py) in CI: pushes and deletes from several clients through two
replicas while GC runs in a loop, on the filesystem and on S3 (moto); every tag must pull afterwards.
The long version: ``python -m bench.gc_soak --seconds 600`` (docs/gc.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.gc_soak import soak
from bench.s3 import start_moto
from tests.storage.servers import MOTO_PORTS

pytestmark = pytest.mark.e2e
SECONDS = float(os.environ.get("MOORAGE_GC_SOAK_SECONDS", "15"))


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_gc_soak_loses_nothing(backend: str, tmp_path: Path) -> None:
    server = None
    if backend == "filesystem":
        storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(tmp_path / "root"), "fsync": False}}
    else:
        server = start_moto(tmp_path / "moto", MOTO_PORTS)
        storage = {"s3": server.parameters(server.make_bucket(), rootdirectory="/registry", secure=False)}
    try:
        result = soak(storage, tmp_path, SECONDS, clients=3, replicas=2, label=backend)
    finally:
        if server is not None:
            server.stop()
    print("\n" + result.summary())
    assert result.losses == []
    assert result.pushes >= 5 and result.deletes >= 1 and result.gc_runs >= 2
    assert result.reused > 0 and result.gc_blobs_removed > 0  # old layers were re-used, garbage was collected
    assert result.tags_checked >= 2 * (result.pushes - result.deletes)
