"""The database's users as a credential source (auth.credentials): asked first, as local users are.

Passwords are checked against the bcrypt hashes of the policy snapshot, so a warm login costs no query;
bcrypt runs off the event loop and a verified password is remembered for a while under a keyed digest
of the user, the password and the hash (clients send Basic on every request), so a changed password or
a disabled user is refused at the next request.  A disabled user is refused here rather than passed on,
so no other source can log in under that name; a user without a local password (the row of a
directory's or a single sign-on's user) is passed on to the source that checks their password.  The
last login is written at most once a minute per user and process, off the request's path and without
moving the change feed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time

import bcrypt

from auth.credentials import Identity, SourceUnavailable, Verdict
from auth.htpasswd import BCRYPT_MAX_PASSWORD, DEFAULT_COST
from auth.policy import MAX_AGE, PolicySnapshot
from storage.database import Cached, DatabaseUnavailable
from storage.database.identity import record_login

log = logging.getLogger("moorage.auth")
VERIFIED_SECONDS = 300.0
VERIFIED_ENTRIES = 4096
LOGIN_RECORD_INTERVAL = 60.0


class DatabaseUsers:
    kind = "database"

    def __init__(self, cache: Cached[PolicySnapshot], last: bool = False) -> None:
        """``last``: no source follows, so an unknown user costs a bcrypt too (timing tells no names)."""
        self.cache = cache
        self.last = last
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}
        self._dummy: bytes | None = None  # made on first need (a quarter second of bcrypt)
        self._recorded: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _snapshot(self) -> PolicySnapshot:
        try:
            return await self.cache.fresh(MAX_AGE)
        except DatabaseUnavailable as e:
            raise SourceUnavailable(str(e), e.retry_after) from None

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        """A refusal is confirmed by one read of the feed's counter first, so a user made or a password
        changed a moment ago by another replica or the CLI logs in at once, not after the next poll."""
        snapshot = await self._snapshot()
        outcome = await self._check(snapshot, user, password)
        if isinstance(outcome, Identity):
            return outcome
        try:
            await self.cache.refresh()
        except DatabaseUnavailable as e:
            raise SourceUnavailable(str(e), e.retry_after) from None
        current = await self._snapshot()
        return outcome if current is snapshot else await self._check(current, user, password)

    async def _check(self, snapshot: PolicySnapshot, user: str, password: str) -> Identity | Verdict:
        record = snapshot.users.get(user)
        if record is None:
            if self.last:
                await asyncio.to_thread(self._spend)
            return Verdict.UNKNOWN
        if record.disabled:
            return Verdict.REFUSED
        if not record.password:
            return Verdict.UNKNOWN
        hashed = record.password.encode()
        digest = hmac.new(self._key, b"\0".join((user.encode(), password.encode(), hashed)), hashlib.sha256).digest()
        if self._verified.get(digest, 0.0) > time.monotonic():
            return Identity(user, self.kind, email=record.email)
        secret = password.encode()
        if len(secret) > BCRYPT_MAX_PASSWORD or not await asyncio.to_thread(bcrypt.checkpw, secret, hashed):
            return Verdict.REFUSED
        if len(self._verified) >= VERIFIED_ENTRIES:
            self._verified.clear()
        self._verified[digest] = time.monotonic() + VERIFIED_SECONDS
        self._note_login(user)
        return Identity(user, self.kind, email=record.email)

    async def current(self, user: str) -> Identity | None:
        record = (await self._snapshot()).user(user)
        return Identity(user, self.kind, email=record.email) if record is not None else None

    def _spend(self) -> None:
        """The bcrypt a known user's check costs."""
        if self._dummy is None:
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(DEFAULT_COST))
        bcrypt.checkpw(b"x", self._dummy)

    def stamp(self, user: str) -> str | None:
        snapshot = self.cache.peek()
        return snapshot.stamp(user) if snapshot is not None else None

    def _note_login(self, user: str) -> None:
        now = time.monotonic()
        if now - self._recorded.get(user, -LOGIN_RECORD_INTERVAL) < LOGIN_RECORD_INTERVAL:
            return
        if len(self._recorded) >= VERIFIED_ENTRIES:
            self._recorded.clear()
        self._recorded[user] = now
        task = asyncio.ensure_future(self._record(user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, user: str) -> None:
        try:
            await self.cache.db.write(lambda conn: record_login(conn, user), policy=False)
        except Exception as e:  # noqa: BLE001 - bookkeeping: the login itself succeeded
            log.debug("last login of %s not recorded: %s", user, e)
