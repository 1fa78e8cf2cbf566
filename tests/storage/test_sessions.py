"""Web UI session records (storage/sessions.py) on every store: in the storage (filesystem, S3) and in the
database (SQLite, PostgreSQL), each shared by two replicas (issue 24, item 8)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage import paths
from storage.database import Database
from storage.database.ui_sessions import DatabaseSessions
from storage.driver.filesystem import FilesystemDriver
from storage.sessions import SessionStore, StorageSessions, record_key
from tests.storage.conftest import DriverFactory

pytestmark = pytest.mark.anyio

Replicas = Callable[[], SessionStore]


@pytest.fixture
def storage_replicas(make_driver: DriverFactory) -> Replicas:
    """Independent stores over one storage (filesystem, S3), as replicas have them."""
    return lambda: StorageSessions(make_driver())


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replicas]:
    """Independent stores over one database, as replicas have them."""
    url = (f"sqlite:///{tmp_path / 'moorage.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    opened: list[Database] = []

    def replica() -> SessionStore:
        opened.append(Database(url))
        return DatabaseSessions(opened[-1])

    yield replica
    for database in opened:
        await database.close()


async def ends_everywhere(replicas: Replicas) -> None:
    one, two = replicas(), replicas()
    first = await one.start("bob", 3600)
    second = await two.start("bob", 3600)
    other = await one.start("alice", 3600)
    assert await two.alive(first, "bob") and await one.alive(second, "bob")
    assert not await two.alive(first, "alice")  # a session is its user's only
    assert not await two.alive("forged", "bob")
    await one.end(first, "bob")
    assert not await two.alive(first, "bob") and await two.alive(second, "bob")
    await two.end_all("bob")
    assert not await one.alive(second, "bob")
    assert await one.alive(other, "alice")


async def expire(replicas: Replicas) -> None:
    store = replicas()
    short = await store.start("bob", 2.0)
    assert await store.alive(short, "bob")
    await asyncio.sleep(2.1)
    assert not await store.alive(short, "bob")
    fresh = await store.start("bob", 3600)  # the expired record is removed meanwhile
    assert await store.alive(fresh, "bob")


async def test_a_session_ends_everywhere_when_it_ends_anywhere_in_storage(storage_replicas: Replicas) -> None:
    await ends_everywhere(storage_replicas)


async def test_a_session_ends_everywhere_when_it_ends_anywhere_in_a_database(database_replicas: Replicas) -> None:
    await ends_everywhere(database_replicas)


async def test_sessions_expire_and_their_records_go_in_storage(storage_replicas: Replicas) -> None:
    await expire(storage_replicas)


async def test_sessions_expire_and_their_records_go_in_a_database(database_replicas: Replicas) -> None:
    await expire(database_replicas)


async def test_only_hashes_are_stored(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path / "root"), fsync=False)
    session = await StorageSessions(driver).start("bob", 60)
    names = await driver.list(paths.ui_sessions(record_key("bob")))
    assert names == [record_key(session)]
    record = json.loads(await driver.get_content(paths.ui_session(record_key("bob"), names[0])))
    assert session not in json.dumps(record) and set(record) == {"expires"}
    await driver.close()
