"""HTTP client of one remote registry (``/v2`` API): streamed requests with the remote's auth.

``RegistryClient.open`` sends one request for a scope and yields the streamed response whatever its
status (callers decide what a 404 means); a 401 is answered once through ``ChallengeAuth`` and the
request resent when its body can be sent again (none, or bytes).  TLS follows the remote's settings: a
CA bundle, or no verification for ``insecure`` remotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from registry.remote.auth import ChallengeAuth, Credentials

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
Body = bytes | AsyncIterator[bytes] | None


class RemoteUnreachable(Exception):
    """The request did not get an answer (connection refused, reset, timeout, TLS failure)."""


class AnswerTooLarge(Exception):
    """A body larger than the caller would hold in memory (a manifest, an error document)."""


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response, read only while it stays within ``limit`` bytes: a remote
    cannot make us hold more than that by answering with an endless body."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"{response.request.method} {response.request.url}: answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def tls_verify(cafile: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the system's CAs, a CA bundle, or none for an insecure remote."""
    if insecure:
        return False
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    return True


class RegistryClient:
    def __init__(self, url: str, http: httpx.AsyncClient, credentials: Credentials | None = None,
                 in_flight: int | None = None) -> None:
        """``in_flight``: requests open at once at most (the others wait here), as many as the HTTP
        client's connections: httpcore's pool rescans every waiting request on each event, which cost a
        copy of 1,000 images a third of its CPU with a few dozen requests waiting."""
        self.url = url.rstrip("/")
        self.http = http
        self.gate = asyncio.Semaphore(in_flight) if in_flight else None
        self.requests: Counter[str] = Counter()  # "GET manifests" -> count, for tests and metrics
        self.auth = ChallengeAuth(self.url, credentials or Credentials(None, None), http, self.requests)

    @asynccontextmanager
    async def open(
        self, method: str, path: str, scope: str, *, label: str | None = None,
        headers: Mapping[str, str] | None = None, params: Any = None, content: Body = None,
        timeout: httpx.Timeout | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response to ``METHOD URL/path`` (any status but a 401 we could answer).

        ``path`` is below the remote's URL (``/v2/...``) or an absolute URL (a Location header).
        Raises RemoteUnreachable, or RemoteAuthError/RemoteAuthUnavailable from the auth."""
        url = path if path.startswith(("http://", "https://")) else f"{self.url}{path}"
        if params and "?" in url:  # httpx would drop the URL's own query (an upload's Location carries state)
            url, params = str(httpx.URL(url).copy_merge_params(params)), None
        label = label or method
        async with self.gate or contextlib.nullcontext():
            response = await self._send(method, url, label, self.auth.header(scope), headers, params, content,
                                        timeout)
            try:
                if response.status_code == 401 and (content is None or isinstance(content, bytes)):
                    challenge = response.headers.get("www-authenticate", "")
                    await response.aclose()
                    self.auth.forget(scope)
                    authorization = await self.auth.answer(challenge, scope)
                    response = await self._send(method, url, label, authorization, headers, params, content,
                                                timeout)
                yield response
            finally:
                await response.aclose()

    async def _send(self, method: str, url: str, label: str, authorization: str | None,
                    headers: Mapping[str, str] | None, params: Any, content: Body,
                    timeout: httpx.Timeout | None) -> httpx.Response:
        sent = {**(headers or {}), "Accept-Encoding": "identity"}
        if authorization:
            sent["Authorization"] = authorization
        self.requests[label] += 1
        try:
            extra = {"timeout": timeout} if timeout is not None else {}
            request = self.http.build_request(method, url, headers=sent, params=params, content=content, **extra)
            return await self.http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise RemoteUnreachable(f"{method} {url}: {describe(e)}") from e


def describe(error: httpx.HTTPError) -> str:
    """A short, readable reason for a transport failure (httpx's messages are often empty)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
