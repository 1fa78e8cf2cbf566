"""Fixtures every test directory may use: a PostgreSQL server for the database tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import postgres
from tests.e2e.helpers import missing_client


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One PostgreSQL 15 for the session, started on first use (skipped loudly, failed in CI, without it)."""
    if not postgres.available():
        missing_client("PostgreSQL 15 server binaries", "apt-get install postgresql (see .ci/run)")
    server = postgres.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> str:
    """A fresh empty database on the session's server."""
    return postgres_server.create_database()
