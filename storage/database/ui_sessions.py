"""Web UI sessions kept in the database's ``ui_sessions`` table (storage/sessions.py says why sessions
have records, and keeps them in the storage when there is no database)."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import Connection, delete, insert, select

from storage.database import Database
from storage.database.schema import ui_sessions
from storage.sessions import record_key


class DatabaseSessions:
    """Records in the ``ui_sessions`` table: a primary-key read per request of a logged-in session, off
    the event loop and bounded by ``database.timeout`` like every database call."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def start(self, user: str, ttl: float) -> str:
        session_id = secrets.token_urlsafe(32)
        now = time.time()

        def write(conn: Connection) -> None:
            conn.execute(delete(ui_sessions).where(ui_sessions.c.expires <= now))
            conn.execute(insert(ui_sessions).values(id=record_key(session_id), user=user, started=now,
                                                    expires=now + ttl))

        await self.database.write(write, policy=False)
        return session_id

    async def alive(self, session_id: str, user: str) -> bool:
        def read(conn: Connection) -> float | None:
            query = select(ui_sessions.c.expires).where(ui_sessions.c.id == record_key(session_id),
                                                        ui_sessions.c.user == user)
            return conn.execute(query).scalar_one_or_none()

        expires = await self.database.read(read)
        return expires is not None and expires > time.time()

    async def end(self, session_id: str, user: str) -> None:
        await self.database.write(lambda conn: conn.execute(
            delete(ui_sessions).where(ui_sessions.c.id == record_key(session_id))), policy=False)

    async def end_all(self, user: str) -> None:
        await self.database.write(lambda conn: conn.execute(
            delete(ui_sessions).where(ui_sessions.c.user == user)), policy=False)
