"""moto (a local S3) for the e2e tests that write to a bucket, started by ``bench.s3`` in the tests' ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.s3 import S3Backend, ServerUnavailable, start_moto
from tests.storage.servers import MOTO_PORTS

from .helpers import IN_CI


def moto_or_skip(directory: Path, what: str) -> Iterator[S3Backend]:
    """A fixture's body: moto until the fixture ends.  A moto that cannot start fails the tests in CI and
    skips them loudly elsewhere (``what`` says what is then not tested)."""
    try:
        server = start_moto(directory, MOTO_PORTS)
    except ServerUnavailable as e:
        if IN_CI:
            pytest.fail(f"moto unavailable in CI: {e}")
        pytest.skip(f"MOTO UNAVAILABLE, {what} NOT RUN: {e}")
    yield server
    server.stop()
