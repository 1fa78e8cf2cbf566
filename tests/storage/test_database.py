"""The database layer (storage/database): lazy creation, migrations under concurrency, bounded calls,
recovery, and the change feed, on SQLite and on a real PostgreSQL 15."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select

from configkit import ConfigError
from storage.database import Cached, Database, DatabaseSettings, DatabaseUnavailable, default_url
from storage.database.migrate import current, heads
from storage.database.schema import metadata, teams
from tests.faultproxy import FaultProxy
from tests.postgres import PostgresServer

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'moorage.db'}"
    return str(request.getfixturevalue("postgres_url"))


def add_team(name: str):  # type: ignore[no-untyped-def]
    import datetime

    def work(conn):  # type: ignore[no-untyped-def]
        conn.execute(insert(teams).values(name=name, created=datetime.datetime.now(datetime.UTC)))

    return work


def team_names(conn) -> list[str]:  # type: ignore[no-untyped-def]
    return list(conn.execute(select(teams.c.name).order_by(teams.c.name)).scalars())


def test_one_chain_of_migrations() -> None:
    assert len(heads()) == 1, f"several migration heads {heads()}: re-parent the newer one onto the other"


def test_schema_created_on_first_use_matches_the_tables(url: str) -> None:
    db = Database(url)
    if url.startswith("sqlite"):
        assert not Path(url.removeprefix("sqlite:///")).exists(), "created before anything needed it"
    assert db.read_sync(db.version) == 1
    with db.engine().connect() as conn:
        assert current(conn) == heads()[0]
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"the migrations and storage/database/schema.py differ: {diff}"
    db.close_sync()


async def test_writes_move_the_feed_and_bookkeeping_does_not(url: str) -> None:
    db = Database(url)
    try:
        start = await db.read(db.version)
        await db.write(add_team("payments"))
        assert await db.read(db.version) == start + 1
        await db.write(add_team("infra"), policy=False)
        assert await db.read(db.version) == start + 1
        assert await db.read(team_names) == ["infra", "payments"]
    finally:
        await db.close()


def test_two_replicas_migrating_at_once(url: str) -> None:
    """Both start on an empty database at the same moment: one migrates, the other waits and finds it done."""
    replicas = [Database(url, timeout=30) for _ in range(3)]
    barrier = threading.Barrier(len(replicas))
    results: list[object] = []

    def start(db: Database) -> None:
        barrier.wait()
        try:
            results.append(db.read_sync(db.version))
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(e)

    threads = [threading.Thread(target=start, args=(db,)) for db in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [1, 1, 1]
    for db in replicas:
        db.close_sync()


def test_default_is_beside_the_filesystem_root(tmp_path: Path) -> None:
    assert default_url(tmp_path / "data") == f"sqlite:///{tmp_path / 'data' / 'moorage.db'}"
    with pytest.raises(ValueError, match="database.url: required"):
        default_url(None)


def test_settings_name_the_key_and_never_echo_the_url() -> None:
    with pytest.raises(ConfigError, match="database.url: expected sqlite") as caught:
        DatabaseSettings.parse({"url": "mysql://root:secret@db/moorage"})
    assert "secret" not in str(caught.value)
    assert DatabaseSettings.parse({"url": "postgresql://u:p@h/d", "timeout": "2s"}).timeout == 2.0
    assert Database("postgresql://u:secret@h/d").describe() == "postgresql+psycopg://u:***@h/d"


async def test_read_only_directory_as_root_is_a_prompt_unavailable(tmp_path: Path) -> None:
    """Root ignores permissions: a path below a regular file cannot be created by anyone."""
    (tmp_path / "file").write_text("")
    db = Database(f"sqlite:///{tmp_path / 'file' / 'moorage.db'}")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="cannot create the database's directory"):
        await db.read(db.version)
    assert time.monotonic() - started < 5


async def recovers(db: Database, seconds: float, message: str) -> None:
    """Wait until ``db`` answers again (the breaker lets a probe through), failing with ``message``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            assert await db.read(db.version) == 1
            return
        except DatabaseUnavailable:
            assert time.monotonic() < deadline, message
            await asyncio.sleep(0.2)


async def test_postgres_refusing_connections_is_a_prompt_unavailable_then_recovers(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    proxy = FaultProxy(f"127.0.0.1:{postgres_server.port}")
    db = Database(postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/"), timeout=2)
    try:
        assert await db.read(db.version) == 1
        proxy.set("refuse")
        for _ in range(5):  # a few failures open the breaker: then it fails fast
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await db.read(db.version)
            assert time.monotonic() - started < 10
        proxy.set("pass")
        await recovers(db, 15, "did not recover after the database came back")
    finally:
        proxy.stop()
        await db.close()


async def test_postgres_that_hangs_answers_within_the_timeout(postgres_server: PostgresServer,
                                                                postgres_url: str) -> None:
    """A stalled server (every process stopped, connections open): each call gives up after the timeout,
    and the event loop stays free meanwhile."""
    db = Database(postgres_url, timeout=1.5)
    assert db.read_sync(db.version) == 1  # the schema made without the short deadline (a loaded machine)
    assert await db.read(db.version) == 1
    postgres_server.pause()
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        results = await asyncio.gather(*(db.read(db.version) for _ in range(20)), return_exceptions=True)
        elapsed = time.monotonic() - started
        task.cancel()
        assert all(isinstance(r, DatabaseUnavailable) for r in results), results
        assert elapsed < 10, f"20 calls to a hung database took {elapsed:.1f}s"
        assert ticks >= elapsed / 0.05 / 4, "the event loop was blocked while the database hung"
    finally:
        postgres_server.resume()
    await recovers(db, 20, "did not recover after the database resumed")
    await db.close()


async def test_a_change_on_one_replica_reaches_the_other_within_the_poll(url: str) -> None:
    a, b = Database(url), Database(url)
    cache = b.feed.follow(Cached(b, team_names, "teams"))
    try:
        assert await cache.fresh(1.0) == []
        b.feed.interval = 0.2
        b.feed.start()
        await a.write(add_team("payments"))
        acknowledged = time.monotonic()
        while cache.peek() != ["payments"]:
            assert time.monotonic() - acknowledged < 2, "the change did not arrive within 2 s"
            await asyncio.sleep(0.02)
        loads = cache.loads
        await asyncio.sleep(0.6)  # polls that find nothing new reload nothing
        assert cache.loads == loads
        assert cache.age() < 1
    finally:
        await a.close()
        await b.close()


async def test_a_refresh_asked_after_a_write_does_not_join_an_older_check(url: str) -> None:
    """A check that read the counter before the write is in flight when the writer asks for a refresh:
    the writer gets a check of its own, so it sees what it wrote (read-your-writes)."""
    a, b = Database(url), Database(url)
    cache = Cached(b, team_names, "teams")
    read, gate = b.read, asyncio.Event()

    async def stalling_read(work):  # type: ignore[no-untyped-def]
        result = await read(work)
        if work == b.version:
            await gate.wait()  # the older check holds its counter until the write is done
        return result

    try:
        assert await cache.fresh(60) == []
        b.read = stalling_read  # type: ignore[method-assign]
        older = asyncio.ensure_future(cache.refresh())
        await asyncio.sleep(0.1)
        await a.write(add_team("payments"))
        mine = asyncio.ensure_future(cache.refresh())
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.wait_for(asyncio.gather(older, mine), 10)
        assert cache.peek() == ["payments"]
    finally:
        await a.close()
        await b.close()


async def test_a_database_slower_than_max_age_still_confirms(url: str) -> None:
    """Every read takes longer than ``max_age`` (a busy server): a check that began after the call is
    current for it, so the answer is the value, not 'too slow to confirm' (the 200-client soak's one 503)."""
    a, b = Database(url), Database(url)
    cache = Cached(b, team_names, "teams")
    read = b.read

    async def slow_read(work):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        return await read(work)

    try:
        assert await cache.fresh(60) == []
        await a.write(add_team("payments"))
        b.read = slow_read  # type: ignore[method-assign]
        cache.confirmed -= 61
        assert await cache.fresh(0.1) == ["payments"]
        assert await asyncio.gather(*(cache.fresh(0.1) for _ in range(5))) == [["payments"]] * 5
    finally:
        await a.close()
        await b.close()


async def test_a_stale_cache_checks_before_answering(url: str) -> None:
    """Without the poller, ``fresh`` itself confirms: a value older than max_age is never returned."""
    a, b = Database(url), Database(url)
    cache = Cached(b, team_names, "teams")
    try:
        assert await cache.fresh(60) == []
        await a.write(add_team("payments"))
        assert await cache.fresh(60) == []  # young enough: no query
        cache.confirmed -= 61
        assert await cache.fresh(60) == ["payments"]
    finally:
        await a.close()
        await b.close()
