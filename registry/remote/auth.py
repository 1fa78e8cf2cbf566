"""Answers to a remote registry's auth challenges: anonymous, Basic, or Docker token auth.

A request goes out with what worked last time for its scope (a cached token, or Basic once the remote
asked for it); on a 401 the challenge decides: ``Basic`` resends with the configured user, ``Bearer``
fetches a token from the realm (with the configured user, or anonymously) for the scope and caches it
until shortly before it expires.  Concurrent 401s on one scope fetch one token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import Counter

import httpx

log = logging.getLogger("moorage.remote")
CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default for a missing expires_in
TOKEN_MARGIN = 0.9  # use a token for 90% of its lifetime: clocks and latency differ


class RemoteAuthError(Exception):
    """The remote refused us, or its challenge cannot be answered: retrying will not help."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class RemoteAuthUnavailable(Exception):
    """The token server could not be reached or failed (5xx): it may work later."""


class Credentials:
    """A user and password for one remote (both None: anonymous)."""

    def __init__(self, username: str | None, password: str | None) -> None:
        self.username = username
        self.password = password

    def basic(self) -> str | None:
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class ChallengeAuth:
    """Authorization headers for one remote, per scope (``repository:NAME:pull,push``)."""

    def __init__(self, url: str, credentials: Credentials, http: httpx.AsyncClient, requests: Counter[str]) -> None:
        self.url = url
        self.credentials = credentials
        self.http = http
        self.requests = requests  # shared with the client: "GET token" counts here
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic expiry)
        self._locks: dict[str, asyncio.Lock] = {}
        self._basic = False  # the remote asked for Basic once: send it up front from now on

    def header(self, scope: str) -> str | None:
        """What to send before any challenge was seen for ``scope`` (None: nothing)."""
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        if self._basic:
            return self.credentials.basic()
        return None

    def forget(self, scope: str) -> None:
        """The token for ``scope`` was refused: fetch a new one next time."""
        self._tokens.pop(scope, None)

    async def answer(self, challenge: str, scope: str) -> str:
        """The Authorization that answers a 401's ``WWW-Authenticate`` for ``scope``."""
        kind, _, rest = challenge.strip().partition(" ")
        basic = self.credentials.basic()
        if kind.lower() == "basic":
            if basic is None:
                raise RemoteAuthError(f"{self.url} wants Basic auth: configure username/password")
            self._basic = True
            return basic
        if kind.lower() != "bearer":
            raise RemoteAuthError(f"{self.url}: unsupported challenge {challenge!r}")
        params = dict(CHALLENGE_PARAM_RE.findall(rest))
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(scope)
            if cached is not None and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            return f"Bearer {await self._fetch_token(params, scope)}"

    async def _fetch_token(self, challenge: dict[str, str], scope: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise RemoteAuthError(f"{self.url}: Bearer challenge without realm")
        # the scope we need, not only the challenge's: a push must ask for pull,push in one token
        scopes = [s for s in scope.split(" ") if s]  # none for GET /v2/: a token that proves who we are
        if challenge.get("scope") and challenge["scope"] not in scopes:
            scopes.append(challenge["scope"])
        query: list[tuple[str, str]] = [("scope", s) for s in scopes]
        if challenge.get("service"):
            query.append(("service", challenge["service"]))
        headers = {}
        basic = self.credentials.basic()
        if basic:
            headers["Authorization"] = basic
        self.requests["GET token"] += 1
        try:
            response = await self.http.get(realm, params=query, headers=headers)
        except httpx.HTTPError as e:
            raise RemoteAuthUnavailable(f"token request to {realm}: {e!r}") from e
        if response.status_code >= 500 or response.status_code == 429:
            raise RemoteAuthUnavailable(f"token request to {realm}: HTTP {response.status_code}")
        if response.status_code != 200:
            who = f"user {self.credentials.username!r}" if self.credentials.username else "anonymous"
            raise RemoteAuthError(f"token request to {realm} as {who}: HTTP {response.status_code}",
                                  response.status_code)
        try:
            body = response.json()
            token = body.get("token") or body["access_token"]
            expires_in = body.get("expires_in")
            lifetime = DEFAULT_TOKEN_LIFETIME if expires_in is None else float(expires_in)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemoteAuthError(f"token request to {realm}: malformed answer ({e!r})") from e
        self._tokens[scope] = (str(token), time.monotonic() + lifetime * TOKEN_MARGIN)
        log.info("remote %s: new token for %s from %s, valid %.0fs", self.url, scope, realm, lifetime)
        return str(token)
