"""The web UI's session: a signed cookie naming the logged-in user, a CSRF token for its forms, and how
the forms are read and refused (shared by the pages of app.py, oidc.py and tokens.py).

Every visitor gets a session (anonymous until login), so forms carry a token even before login. The
cookie is signed (itsdangerous), HttpOnly and SameSite=Strict, Secure when the browser came over
HTTPS.  A logged-in session also has a record on the server (``storage.sessions``, shared by every
replica), read on every request: it ends at logout (the record is deleted: a copy of the cookie opens
nothing afterwards, on any replica), after ``ui.sessionttl``, when the user's password changes or the
user is disabled or removed (the stamp the cookie carries no longer matches), and with ``end_all``.
State-changing requests must carry the session's CSRF token and, when the browser sends one, an
Origin that is the registry's own.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from auth.forms import read_form
from auth.login import Login
from storage.driver import StorageUnavailable
from storage.sessions import SessionStore

COOKIE = "moorage_session"


@dataclass(slots=True)
class Session:
    user: str | None
    csrf: str
    stamp: str | None = None
    changed: bool = False
    id: str | None = None  # of the server's record of a logged-in session


class Sessions:
    def __init__(self, secret: str | None, ttl: float, login: Login, path: str, store: SessionStore,
                 confirm: Callable[[], Awaitable[None]] | None = None) -> None:
        """``store``: the server-side records of logged-in sessions (a logout ends one everywhere).
        ``confirm``: one read of the change feed that makes this process's view of the users current
        (auth.database): a session stamped by another process or replica a moment ago, at a user's first
        single sign-on or a password change, is checked against it before it is refused."""
        self.secret = secret or secrets.token_urlsafe(32)  # also signs the single sign-on cookie
        self.serializer = URLSafeTimedSerializer(self.secret, salt="moorage-ui-session")
        self.ttl = ttl
        self.login = login
        self.path = path
        self.store = store
        self.confirm = confirm

    async def load(self, request: Request) -> Session:
        """The visitor's session; a fresh anonymous one when the cookie is missing, forged, expired, or
        names a session that ended.  Raises StorageUnavailable when the records cannot be read."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self.serializer.loads(raw, max_age=self.ttl)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("c"), str):
                user, session_id = data.get("u"), data.get("i")
                if user is None:
                    return Session(None, data["c"])
                if (isinstance(user, str) and isinstance(session_id, str) and await self._stamped(user, data.get("s"))
                        and await self.store.alive(session_id, user)):
                    return Session(user, data["c"], data.get("s"), id=session_id)
        return Session(None, secrets.token_urlsafe(24), changed=True)

    async def _stamped(self, user: str, stamp: object) -> bool:
        """Whether the session's stamp is the user's current one, confirmed once when it differs."""
        if self.login.stamp(user) == stamp:
            return True
        if self.confirm is None:
            return False
        try:
            await self.confirm()
        except StorageUnavailable:  # the database's faults included: the stamp this process knows decides
            return False
        return self.login.stamp(user) == stamp

    async def log_in(self, session: Session, user: str) -> None:
        """A new server-side session, and a fresh CSRF token (a token seen before login is not reused)."""
        if session.id is not None and session.user is not None:
            await self.store.end(session.id, session.user)
        session.id = await self.store.start(user, self.ttl)
        session.user, session.stamp = user, self.login.stamp(user)
        session.csrf, session.changed = secrets.token_urlsafe(24), True

    async def log_out(self, session: Session) -> None:
        """Ends the session on the server: its cookie, wherever it was copied, opens nothing any more."""
        if session.id is not None and session.user is not None:
            await self.store.end(session.id, session.user)
        session.user, session.stamp, session.id = None, None, None
        session.csrf, session.changed = secrets.token_urlsafe(24), True

    async def end_all(self, user: str) -> None:
        """Every session of ``user`` ends, on every replica (for an admin disabling the user, or
        "log out everywhere"; a password change or disabling also ends them through the stamp)."""
        await self.store.end_all(user)

    def save(self, session: Session, response: Response, secure: bool) -> None:
        """``secure``: the browser came over HTTPS (directly or through a trusted proxy)."""
        if not session.changed:
            return
        value = self.serializer.dumps({"u": session.user, "c": session.csrf, "s": session.stamp, "i": session.id})
        response.set_cookie(COOKIE, value, max_age=int(self.ttl), path=self.path, httponly=True,
                            samesite="strict", secure=secure)


def csrf_ok(session: Session, submitted: str | None, request: Request, origin: str) -> bool:
    """The form's token matches the session's, and the browser's Origin (if sent) is ours."""
    sent_origin = request.headers.get("origin")
    if sent_origin and sent_origin != "null" and sent_origin.rstrip("/") != origin:
        return False
    return bool(submitted) and hmac.compare_digest(submitted.encode(), session.csrf.encode())


def safe_next(target: str | None, base: str) -> str:
    """Only a path of this UI: never an open redirect to another site."""
    if target and target.startswith(f"{base}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{base}/"


class Forbidden(Exception):
    """The page exists but this visitor may not do this (delete without the right, bad CSRF token)."""


async def read_fields(request: Request) -> dict[str, str]:
    """A small urlencoded form, first value of each field; {} for anything else (then the CSRF check fails)."""
    form = await read_form(request)
    return {name: values[0] for name, values in (form or {}).items()}
