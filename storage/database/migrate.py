"""Schema migrations (Alembic, ``storage/database/migrations``), run by every process on its first
database call and safe when several start at once.

The whole upgrade runs in one transaction that first takes a lock: on PostgreSQL a transaction-level
advisory lock (DDL is transactional there), on SQLite the write lock (``BEGIN IMMEDIATE``).  The second
replica waits on the lock, then finds the schema at head and does nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x6D6F6F72  # "moor": the advisory lock every replica's migration takes
# Alembic runs a migration through module-level proxies (``alembic.op``): two databases of one process
# migrating at once (two registries in one test process, a background write racing a command) would
# clobber each other's ("'NoneType' object has no attribute 'f'")
IN_PROCESS = threading.Lock()

log = logging.getLogger("moorage.database")


def alembic_config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def heads() -> tuple[str, ...]:
    """The newest revisions of the chain (exactly one, or two lanes' migrations need re-parenting)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection, timeout: float) -> None:
    """Bring the schema to head in one locked transaction; ``timeout`` bounds the wait for another
    replica's migration (PostgreSQL)."""
    with conn.begin():
        if conn.dialect.name == "postgresql":
            ms = int(timeout * 1000)
            conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
            conn.execute(text(f"SET LOCAL statement_timeout = {ms}"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        before = current(conn)
        (head,) = heads()
        if before == head:
            return
        with IN_PROCESS:
            command.upgrade(alembic_config(conn), "head")
        log.info("database schema migrated from %s to %s", before or "nothing", head)
