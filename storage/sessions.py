"""Web UI sessions the server can end: one record per logged-in session, shared by every replica.

A signed cookie alone cannot be taken back: a copy kept after logout stayed valid until it expired
(12 h), CSRF token included.  So logging in writes a record, every request of a logged-in session
reads it, and logging out deletes it, which ends that session at once on every replica, since they all
read the same records: in the database when the registry has one (``ui_sessions``, in
storage/database/ui_sessions.py), otherwise in the storage (``_moorage/ui-sessions/<user>/<session>``,
as the GC lease and the notification queue keep their small shared state).  ``end_all`` ends every
session of a user (an admin disabling them, a password change, "log out everywhere").

What is stored is the SHA-256 of the session id, never the id itself, so a copy of the database or
the bucket opens no session.  Expired records go when their user next logs in (and, in the database,
whenever anyone does).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Protocol

from storage import paths
from storage.driver import PathNotFound, StorageDriver


def record_key(value: str) -> str:
    """What is stored for a session id (and, in the storage's paths, for a user name)."""
    return hashlib.sha256(value.encode()).hexdigest()


class SessionStore(Protocol):
    async def start(self, user: str, ttl: float) -> str:
        """A new session of ``user`` for ``ttl`` seconds; its id (what the cookie carries)."""
        ...

    async def alive(self, session_id: str, user: str) -> bool:
        """Whether the session exists, belongs to ``user`` and has not expired."""
        ...

    async def end(self, session_id: str, user: str) -> None:
        ...

    async def end_all(self, user: str) -> None:
        ...


class StorageSessions:
    """Records in the registry's storage: a read per request of a logged-in session (the filesystem
    answers from its cache of small files after a stat; S3, one GET)."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def start(self, user: str, ttl: float) -> str:
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        await self._forget_expired(user, now)
        body = json.dumps({"expires": now + ttl}).encode()
        await self.driver.put_content(paths.ui_session(record_key(user), record_key(session_id)), body)
        return session_id

    async def alive(self, session_id: str, user: str) -> bool:
        try:
            raw = await self.driver.get_content(paths.ui_session(record_key(user), record_key(session_id)))
            return float(json.loads(raw)["expires"]) > time.time()
        except PathNotFound:
            return False
        except (ValueError, KeyError, TypeError):
            return False  # a damaged record opens nothing

    async def end(self, session_id: str, user: str) -> None:
        await self.driver.delete_file(paths.ui_session(record_key(user), record_key(session_id)))

    async def end_all(self, user: str) -> None:
        try:
            await self.driver.delete(paths.ui_sessions(record_key(user)))
        except PathNotFound:
            pass

    async def _forget_expired(self, user: str, now: float) -> None:
        directory = paths.ui_sessions(record_key(user))
        try:
            names = await self.driver.list(directory)
        except PathNotFound:
            return
        for name in names:
            path = f"{directory}/{name}"
            try:
                expired = float(json.loads(await self.driver.get_content(path))["expires"]) <= now
            except PathNotFound:
                continue
            except (ValueError, KeyError, TypeError):
                expired = True
            if expired:
                await self.driver.delete_file(path)
