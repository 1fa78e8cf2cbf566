"""The brake's shared counts: failed logins counted in the database, so that every replica and worker
brakes on the same count (``auth/brake.py`` says what the count means).  Imported only by registries
with a database, so the brake alone loads no SQLAlchemy."""

from __future__ import annotations

import logging
import time

from storage.database import Database, DatabaseUnavailable
from storage.database.login_failures import count_failure, failure_key, forget

log = logging.getLogger("moorage.auth")


class SharedFailures:
    """The brake's counts in the database (``login_failures``), bounded like every database call; an
    unreachable database is logged (once a minute) and leaves each process braking on its own."""

    QUIET = 60.0

    def __init__(self, database: Database) -> None:
        self.database = database
        self._complained = -self.QUIET

    async def failed(self, user: str, address: str, window: float) -> int | None:
        """The shared count after this failure; None when the database cannot say now."""
        key, now = failure_key(user, address), time.time()
        try:
            return await self.database.write(lambda conn: count_failure(conn, key, now, window), policy=False)
        except DatabaseUnavailable as e:
            self._complain(e)
            return None

    async def forget(self, user: str, address: str) -> None:
        key = failure_key(user, address)
        try:
            await self.database.write(lambda conn: forget(conn, key), policy=False)
        except DatabaseUnavailable as e:
            self._complain(e)

    def _complain(self, error: DatabaseUnavailable) -> None:
        if time.monotonic() - self._complained >= self.QUIET:
            self._complained = time.monotonic()
            log.warning("brake: failed logins are counted per process while the database is unavailable: %s",
                        error)
