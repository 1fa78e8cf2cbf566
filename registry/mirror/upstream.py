"""HTTP client of one upstream registry, for the mirror: the shared remote client
(``registry.remote``: anonymous, Basic or Docker token auth by the upstream's challenge) with the
mirror's view of the answers: 2xx is content, 404 is "not there", anything else an upstream failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from registry.mirror.config import Upstream
from registry.remote.auth import Credentials, RemoteAuthError, RemoteAuthUnavailable
from registry.remote.client import MANIFEST_ACCEPT, RegistryClient, RemoteUnreachable

__all__ = ["MANIFEST_ACCEPT", "UpstreamClient", "UpstreamError", "UpstreamNotFound"]


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
        self.remote = RegistryClient(upstream.url, http, Credentials(upstream.username, upstream.password))

    @property
    def requests(self) -> Counter[str]:
        """``"GET manifests"`` -> count, for tests and metrics."""
        return self.remote.requests

    def url(self, remote: str, kind: str, reference: str) -> str:
        return f"{self.upstream.url}/v2/{remote}/{kind}/{reference}"

    @asynccontextmanager
    async def open(
        self, method: str, remote: str, kind: str, reference: str, headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response with status 2xx; raises UpstreamNotFound (404) or UpstreamError."""
        url = self.url(remote, kind, reference)
        try:
            async with self.remote.open(method, f"/v2/{remote}/{kind}/{reference}", f"repository:{remote}:pull",
                                        label=f"{method} {kind}", headers=headers, params=params) as response:
                if response.status_code == 404:
                    raise UpstreamNotFound(f"{method} {url}: 404")
                if not 200 <= response.status_code < 300:
                    raise UpstreamError(f"{method} {url}: HTTP {response.status_code}", response.status_code)
                try:
                    yield response
                except httpx.HTTPError as e:  # the body broke off: the upstream failed, not us
                    raise UpstreamError(f"{method} {url}: {e!r}") from e
        except RemoteAuthError as e:
            raise UpstreamError(str(e), e.status) from None
        except (RemoteAuthUnavailable, RemoteUnreachable) as e:
            raise UpstreamError(str(e)) from None
