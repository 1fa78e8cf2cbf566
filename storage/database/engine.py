"""The database: a SQLAlchemy Core engine used from a pool of its own threads, every call bounded in time.

Why threads and the synchronous drivers (the standard ``sqlite3`` and psycopg 3) rather than an async
engine: one code path serves SQLite, PostgreSQL and the CLI (which has no event loop), SQLite has no
truly asynchronous driver anyway (aiosqlite is a thread per connection), and a call's deadline is
enforced the same way for both.  Calls run on ``moorage-db`` threads, never the storage pool, so a hung
database cannot starve blob I/O.  A call that misses its deadline raises ``DatabaseUnavailable`` at once
(the registry answers 503 ``UNAVAILABLE``); its thread finishes on its own, bounded by PostgreSQL's
``statement_timeout``/``lock_timeout`` and SQLite's busy timeout.  After repeated failures a breaker
fails calls fast; the first call after its cooldown probes, so the registry recovers by itself.

Nothing is opened until a call needs it: the SQLite file (and the schema, through the migrations) is
created on first use, so a registry that never uses the database never writes one, on a read-only
volume included.  Writes take the database's writer lock first (SQLite ``BEGIN IMMEDIATE``; on
PostgreSQL the row lock of the change feed's counter, which every policy change increments), so checks
made inside a write ("the last admin") cannot race another replica's write.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, exc, select, update
from sqlalchemy.engine import URL, make_url

from storage import metrics
from storage.breaker import CircuitBreaker
from storage.database.errors import DatabaseUnavailable
from storage.database.feed import ChangeFeed
from storage.database.schema import feed
from storage.database.settings import DEFAULT_FILE, DatabaseSettings
from storage.driver.interface import StorageUnavailable

log = logging.getLogger("moorage.database")
T = TypeVar("T")
WORKERS = 8  # threads (and at most as many pooled connections in use at once)
BREAKER_THRESHOLD = 3
BREAKER_COOLDOWN = 2.0
MIGRATION_TIMEOUT = 60.0  # a replica waiting for another's migration waits this long
SQLITE_WAL_PATIENCE = 30.0  # a new connection retries switching a new file to WAL while another holds it


def sqlalchemy_url(url: str) -> URL:
    """``postgresql://`` and ``postgres://`` as psycopg 3 URLs (SQLAlchemy would look for psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def default_url(root: str | Path | None) -> str:
    """``moorage.db`` in the filesystem storage's root; with other storage the URL must be configured."""
    if root is None:
        raise ValueError("database.url: required with this storage driver (sqlite:////path/moorage.db "
                         "for one process, postgresql://user:password@host/database for several replicas)")
    return f"sqlite:///{Path(root).absolute() / DEFAULT_FILE}"


class Database:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = sqlalchemy_url(url)
        self.timeout = timeout
        self._engine: Engine | None = None
        self._schema_ready = False
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()  # held while migrating: never taken on the event loop
        self._executor: ThreadPoolExecutor | None = None
        self._breaker = CircuitBreaker("database", BREAKER_THRESHOLD, BREAKER_COOLDOWN)
        self.feed = ChangeFeed(self)  # the caches of database state this process keeps follow it

    @classmethod
    def from_settings(cls, settings: DatabaseSettings, root: str | Path | None) -> Database:
        """``root``: the filesystem storage's root directory (None with S3), where the default file lives."""
        return cls(settings.url or default_url(root), settings.timeout)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def describe(self) -> str:
        """The URL without its password, for logs and the start-up line."""
        return self.url.render_as_string(hide_password=True)

    # --- calls -------------------------------------------------------------------------------------------

    async def read(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one read transaction on a database thread, within ``timeout``."""
        return await self._submit(self.read_sync, work)

    async def write(self, work: Callable[[Connection], T], policy: bool = True) -> T:
        """``work(connection)`` in one write transaction.  ``policy``: the change affects who may do what,
        so the change feed's counter is incremented (every replica's caches reload); bookkeeping such as
        the last login passes False."""
        return await self._submit(self.write_sync, work, policy)

    def read_sync(self, work: Callable[[Connection], T]) -> T:
        """As ``read`` in the calling thread (the CLI); only the database's own timeouts bound it."""
        return self._transaction(work, write=False, policy=False)

    def write_sync(self, work: Callable[[Connection], T], policy: bool = True) -> T:
        return self._transaction(work, write=True, policy=policy)

    async def _submit(self, call: Callable[..., T], *args: Any) -> T:
        try:
            self._breaker.check()
        except StorageUnavailable as e:
            raise DatabaseUnavailable(str(e), e.retry_after) from None
        deadline = time.monotonic() + self.timeout
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool(), self._on_time, deadline, call, args)
        try:
            result = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self._breaker.failure()
            log.warning("database call timed out after %gs", self.timeout)
            raise DatabaseUnavailable(f"the database did not answer within {self.timeout:g}s",
                                      retry_after=BREAKER_COOLDOWN) from None
        except DatabaseUnavailable:
            self._breaker.failure()
            raise
        self._breaker.success()
        return result

    @staticmethod
    def _on_time(deadline: float, call: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Skips work whose caller has given up while it queued (a stalled database must not pile up)."""
        if time.monotonic() > deadline:
            raise DatabaseUnavailable("the database is too slow: the call waited past its deadline")
        return call(*args)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="moorage-db")
        return self._executor

    def _transaction(self, work: Callable[[Connection], T], write: bool, policy: bool) -> T:
        metrics.database_transactions.labels("write" if write else "version" if work == self.version else "read").inc()
        try:
            engine = self.engine()
            self._ensure_schema(engine)
            with engine.connect() as conn:
                if write:
                    conn = conn.execution_options(moorage_write=True)
                elif self.dialect == "postgresql":  # one snapshot for every statement (SQLite's reads have it)
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    if policy:
                        conn.execute(update(feed).where(feed.c.id == 1).values(version=feed.c.version + 1))
                    return work(conn)
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as e:
            raise unavailable(e) from e
        except exc.DBAPIError as e:
            if e.connection_invalidated:
                raise unavailable(e) from e
            raise

    # --- engine and schema ---------------------------------------------------------------------------

    def engine(self) -> Engine:
        """Created on first use (the SQLite file, and its directory, with it)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        if self.dialect == "sqlite":
            path = self.url.database
            if path and path != ":memory:":
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise DatabaseUnavailable(f"cannot create the database's directory for {path}: "
                                              f"{e.strerror}") from e
            engine = create_engine(self.url, connect_args={"timeout": self.timeout, "check_same_thread": False},
                                   pool_timeout=self.timeout)
            event.listen(engine, "connect", sqlite_connect)
            event.listen(engine, "begin", sqlite_begin)
            return engine
        ms = int(self.timeout * 1000)
        connect_args = {
            "connect_timeout": max(2, math.ceil(self.timeout)),  # libpq's minimum is 2 s
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms} "
                       f"-c idle_in_transaction_session_timeout={ms * 6}",
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
            "tcp_user_timeout": ms,  # a peer that stops acknowledging is dropped, not waited for
            "application_name": "moorage",
        }
        return create_engine(self.url, connect_args=connect_args, pool_pre_ping=True, pool_timeout=self.timeout,
                             pool_size=WORKERS, max_overflow=2, pool_recycle=1800)

    def _ensure_schema(self, engine: Engine) -> None:
        """The migrations run once per process, on first use (storage/database/migrate.py takes the lock)."""
        if self._schema_ready:
            return
        from storage.database.migrate import upgrade

        with self._schema_lock:
            if not self._schema_ready:
                with engine.connect() as conn:
                    upgrade(conn.execution_options(moorage_write=True), MIGRATION_TIMEOUT)
                self._schema_ready = True

    def version(self, conn: Connection) -> int:
        """The change feed's counter as this transaction sees it."""
        return int(conn.execute(select(feed.c.version).where(feed.c.id == 1)).scalar_one())

    async def close(self) -> None:
        await self.feed.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.dispose)

    def close_sync(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def unavailable(error: Exception) -> DatabaseUnavailable:
    """The driver's first line (never the URL, which may hold a password) as the reason."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:200]
    log.warning("database unavailable: %s", reason)
    return DatabaseUnavailable(f"the database is unavailable: {reason}", retry_after=BREAKER_COOLDOWN)


def sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    """Transactions are begun by ``sqlite_begin`` (the driver's own would defer the lock); WAL lets
    readers go on while one process writes; foreign keys enforce the cascades."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    use_wal(cursor, SQLITE_WAL_PATIENCE)
    cursor.close()


def use_wal(cursor: Any, patience: float) -> None:
    """Switch a new database file to WAL (it stays so).  The switch needs the file to itself and, unlike
    other statements, answers "database is locked" at once instead of waiting the busy timeout: a
    process that opens the database while another migrates it tries again for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def sqlite_begin(conn: Connection) -> None:
    """Writers take the write lock when they begin, so two never deadlock upgrading a read lock."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("moorage_write") else "BEGIN")
