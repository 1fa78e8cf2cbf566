"""Failed logins counted in the database, so that every replica and worker brakes on the same count
(``auth/brake.py`` decides what the count means).

A row per (user, client address), keyed by a hash of both (neither is kept in clear); one statement
counts a failure and answers the new count, so concurrent failures on several replicas never lose one.
Rows idle for longer than the brake's window go with the next failure's write.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, case, delete
from sqlalchemy.dialects import postgresql, sqlite

from storage.database.schema import login_failures


def failure_key(user: str, address: str) -> str:
    return hashlib.sha256(f"{user}\0{address}".encode()).hexdigest()


def count_failure(conn: Connection, key: str, now: float, window: float) -> int:
    """One more failure for ``key`` at ``now`` (Unix time); the count it makes.  A count idle for
    longer than ``window`` starts again at one."""
    table = login_failures.c
    conn.execute(delete(login_failures).where(table.last < now - window, table.key != key))
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(login_failures)
    restarted_or_more = case((insert.excluded.last - table.last > window, 1), else_=table.count + 1)
    statement = insert.values(key=key, count=1, last=now).on_conflict_do_update(
        index_elements=[table.key], set_={"count": restarted_or_more, "last": insert.excluded.last},
    ).returning(table.count)
    return int(conn.execute(statement).scalar_one())


def forget(conn: Connection, key: str) -> None:
    """A success: the count starts again."""
    conn.execute(delete(login_failures).where(login_failures.c.key == key))
