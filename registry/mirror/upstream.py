"""HTTP client of one upstream registry: anonymous, Basic, or Docker token auth by the upstream's challenge.

A request goes out with the credentials that worked last time for its scope; on a 401 the challenge
decides: ``Basic`` resends with the configured user, ``Bearer`` fetches a token from the realm (with the
configured user, or anonymously) and caches it per scope until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from registry.mirror.config import Upstream

log = logging.getLogger("moorage.mirror")
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default for a missing expires_in
TOKEN_MARGIN = 0.9  # use a token for 90% of its lifetime: clocks and latency differ


class UpstreamError(Exception):
    """The upstream could not be reached or answered with an error (not 404)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamNotFound(Exception):
    """The upstream answered 404: the manifest, blob or repository does not exist there."""


class UpstreamClient:
    def __init__(self, upstream: Upstream, http: httpx.AsyncClient) -> None:
        self.upstream = upstream
        self.http = http
        self.requests: Counter[str] = Counter()  # "GET manifests" -> count, for tests and metrics
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic expiry)
        self._token_locks: dict[str, asyncio.Lock] = {}
        self._basic = False  # the upstream asked for Basic once: send it up front from now on

    def url(self, remote: str, kind: str, reference: str) -> str:
        return f"{self.upstream.url}/v2/{remote}/{kind}/{reference}"

    @asynccontextmanager
    async def open(
        self, method: str, remote: str, kind: str, reference: str, headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response with status 2xx; raises UpstreamNotFound (404) or UpstreamError."""
        url = self.url(remote, kind, reference)
        scope = f"repository:{remote}:pull"
        label = f"{method} {kind}"
        response = await self._send(method, url, label, self._authorization(scope), headers or {}, params)
        try:
            if response.status_code == 401:
                challenge = response.headers.get("www-authenticate", "")
                await response.aclose()
                auth = await self._answer(challenge, scope)
                response = await self._send(method, url, label, auth, headers or {}, params)
            if response.status_code == 404:
                raise UpstreamNotFound(f"{method} {url}: 404")
            if not 200 <= response.status_code < 300:
                raise UpstreamError(f"{method} {url}: HTTP {response.status_code}", response.status_code)
            try:
                yield response
            except httpx.HTTPError as e:  # the body broke off: the upstream failed, not us
                raise UpstreamError(f"{method} {url}: {e!r}") from e
        finally:
            await response.aclose()

    async def _send(
        self, method: str, url: str, label: str, auth: str | None, headers: dict[str, str],
        params: dict[str, str] | None,
    ) -> httpx.Response:
        headers = {**headers, "Accept-Encoding": "identity"}
        if auth:
            headers["Authorization"] = auth
        self.requests[label] += 1
        try:
            request = self.http.build_request(method, url, headers=headers, params=params)
            return await self.http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise UpstreamError(f"{method} {url}: {e!r}") from e

    def _authorization(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        if self._basic:
            return self._basic_header()
        return None

    def _basic_header(self) -> str | None:
        if self.upstream.username is None:
            return None
        raw = f"{self.upstream.username}:{self.upstream.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def _answer(self, challenge: str, scope: str) -> str:
        """The Authorization for ``scope`` that answers a 401's challenge; UpstreamError when we have none."""
        kind, _, rest = challenge.strip().partition(" ")
        basic = self._basic_header()
        if kind.lower() == "basic":
            if basic is None:
                raise UpstreamError(f"{self.upstream.url} wants Basic auth: configure username/password", 401)
            self._basic = True
            return basic
        if kind.lower() != "bearer":
            raise UpstreamError(f"{self.upstream.url}: unsupported challenge {challenge!r}", 401)
        params = dict(CHALLENGE_PARAM_RE.findall(rest))
        lock = self._token_locks.setdefault(scope, asyncio.Lock())
        async with lock:  # concurrent 401s on one scope fetch one token
            cached = self._tokens.get(scope)
            if cached is not None and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            return f"Bearer {await self._fetch_token(params, scope)}"

    async def _fetch_token(self, challenge: dict[str, str], scope: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise UpstreamError(f"{self.upstream.url}: Bearer challenge without realm", 401)
        query = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        headers = {}
        basic = self._basic_header()
        if basic:
            headers["Authorization"] = basic
        self.requests["GET token"] += 1
        try:
            response = await self.http.get(realm, params=query, headers=headers)
        except httpx.HTTPError as e:
            raise UpstreamError(f"token request to {realm}: {e!r}") from e
        if response.status_code != 200:
            raise UpstreamError(f"token request to {realm}: HTTP {response.status_code}", 401)
        try:
            body = response.json()
            token = body.get("token") or body["access_token"]
            expires_in = body.get("expires_in")
            lifetime = DEFAULT_TOKEN_LIFETIME if expires_in is None else float(expires_in)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UpstreamError(f"token request to {realm}: malformed answer ({e!r})", 401) from e
        self._tokens[scope] = (token, time.monotonic() + lifetime * TOKEN_MARGIN)
        log.info("mirror: new token for %s from %s, valid %.0fs", scope, realm, lifetime)
        return str(token)
