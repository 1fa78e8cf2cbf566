"""A remote registry as a side of a copy, over its /v2 API (any registry: Moorage, Distribution, a cloud
registry), through the shared client of ``registry.remote`` (Basic or Docker token auth, TLS options).

Requests without a body, or with one we can send again, are retried ``requestretries`` times when the
remote did not answer or answered 429/5xx (after its ``Retry-After``, at most ``MAX_WAIT``); blob uploads
are retried by the copier, which opens the source again.  A refusal of our credentials raises
``Refused`` at once; a full disk (507) or any other error fails the item with the remote's message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from registry.mediatypes import MAX_MANIFEST_SIZE, detect_media_type
from registry.remote.auth import Credentials, RemoteAuthError, RemoteAuthUnavailable
from registry.remote.client import MANIFEST_ACCEPT, AnswerTooLarge, RegistryClient, RemoteUnreachable, tls_verify
from registry.remote.client import read_limited as read_within
from registry.replication.rules import Remote
from registry.replication.side import BlobStream, ItemFailed, Manifest, Refused, RemoteDown, Transient
from storage.digests import Digest, InvalidDigest, parse_digest

log = logging.getLogger("moorage.replication")
T = TypeVar("T")
PAGE = 1000
CHUNK = 1 << 20
FIRST_WAIT = 0.5  # seconds before the first retry of a request; doubles
MAX_WAIT = 30.0
INDEX = "application/vnd.oci.image.index.v1+json"
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


def remote_http(remote: Remote, connections: int) -> httpx.AsyncClient:
    timeout = httpx.Timeout(remote.timeout, pool=None)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(verify=tls_verify(remote.cafile, remote.insecure), timeout=timeout, limits=limits,
                             follow_redirects=True)


class RemoteSide:
    def __init__(self, remote: Remote, http: httpx.AsyncClient, retries: int = 3, chunksize: int = 0,
                 connections: int | None = None) -> None:
        self.remote = remote
        self.chunksize = chunksize  # upload blobs larger than this in PATCHes of it; 0: in one PUT
        self.label = f"remote {remote.name} ({remote.url})"
        self.client = RegistryClient(remote.url, http, Credentials(remote.username, remote.password), connections)
        self.retries = retries
        self.http = http

    async def close(self) -> None:
        await self.http.aclose()

    # --- requests ----------------------------------------------------------------------------------

    async def call(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` with retries of transient failures; errors become the side's exceptions."""
        wait = FIRST_WAIT
        for tries in range(self.retries + 1):
            try:
                return await attempt()
            except RemoteAuthError as e:
                raise Refused(f"{self.label} refused {self.who()}: {e}") from None
            except (Transient, RemoteUnreachable, RemoteAuthUnavailable) as e:
                if tries == self.retries:
                    raise RemoteDown(str(e) if isinstance(e, Transient) else f"{what}: {e}") from None
                delay = min(getattr(e, "retry_after", None) or wait, MAX_WAIT)
                log.info("replication: %s: %s; again in %.1fs", what, e, delay)
                await asyncio.sleep(delay)
                wait *= 2
        raise AssertionError("unreachable")

    def who(self) -> str:
        return f"the credentials of {self.remote.username!r}" if self.remote.username else "anonymous access"

    def check(self, what: str, response: httpx.Response, body: bytes) -> None:
        """Raise for a response that is no success (404 is the caller's to read before)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"{what}: HTTP {status}{error_text(body)}"
        if status == 401:
            raise Refused(f"{self.label} refused {self.who()} ({message})")
        if status in TRANSIENT:
            raise Transient(message, retry_after(response))
        raise ItemFailed(message)

    async def request(self, method: str, path: str, scope: str, what: str, *, label: str,
                      headers: dict[str, str] | None = None, params: Any = None, content: bytes | None = None,
                      ok404: bool = False, limit: int = MAX_MANIFEST_SIZE) -> tuple[httpx.Response, bytes] | None:
        """One small request with retries: its response and body (None for a 404 when ``ok404``)."""

        async def attempt() -> tuple[httpx.Response, bytes] | None:
            async with self.client.open(method, path, scope, label=label, headers=headers, params=params,
                                        content=content) as response:
                try:
                    body = await read_limited(response, limit)
                except httpx.HTTPError as e:
                    raise Transient(f"{method} {path}: {e!r}") from e
                if response.status_code == 404 and ok404:
                    return None
                self.check(what, response, body)
                return response, body

        return await self.call(what, attempt)

    async def ping(self) -> None:
        """``GET /v2/`` with our credentials: before an execution starts, so that a remote that refuses
        them, or is down, costs one clear error and not one per item."""
        await self.request("GET", "/v2/", "", f"{self.label}: GET /v2/", label="GET /v2/")

    # --- reading -----------------------------------------------------------------------------------

    async def repositories(self) -> AsyncIterator[str]:
        path: str | None = f"/v2/_catalog?n={PAGE}"
        while path is not None:
            found = await self.request("GET", path, "registry:catalog:*", f"{self.label}: catalog", label="GET catalog")
            assert found is not None
            response, body = found
            for name in sorted(json_field(body, "repositories")):
                yield name
            path = next_link(response, path)

    async def tags(self, repository: str) -> list[str]:
        path: str | None = f"/v2/{repository}/tags/list?n={PAGE}"
        tags: list[str] = []
        while path is not None:
            found = await self.request("GET", path, pull(repository), f"{self.label}: tags of {repository}",
                                       label="GET tags", ok404=True)
            if found is None:
                return tags
            response, body = found
            tags += json_field(body, "tags")
            path = next_link(response, path)
        return sorted(set(tags))

    async def _manifest_request(self, method: str, repository: str, reference: str,
                                what: str) -> tuple[httpx.Response, bytes] | None:
        """GET or HEAD of a manifest by tag or digest; None when the remote does not have it."""
        return await self.request(method, f"/v2/{repository}/manifests/{reference}", pull(repository), what,
                                  label=f"{method} manifests", headers={"Accept": MANIFEST_ACCEPT}, ok404=True)

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        what = f"{self.label}: manifest {repository}:{reference}"
        found = await self._manifest_request("GET", repository, reference, what)
        if found is None:
            return None
        response, content = found
        expected = expected_digest(reference, response.headers.get("docker-content-digest"))
        algorithm = expected.algorithm if expected is not None else "sha256"
        digest = parse_digest(f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}")
        if expected is not None and digest != expected:
            raise ItemFailed(f"{what}: its content is {digest}, not {expected}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if not media_type or media_type in ("application/json", "application/octet-stream", "text/plain"):
            media_type = detect_media_type(content)
        return Manifest(digest, media_type, content)

    async def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        what = f"{self.label}: manifest {repository}:{reference}"
        found = await self._manifest_request("HEAD", repository, reference, what)
        if found is None:
            return None
        claimed = found[0].headers.get("docker-content-digest")
        if claimed is None:  # a registry that does not say: read it
            manifest = await self.manifest(repository, reference)
            return manifest.digest if manifest is not None else None
        try:
            return parse_digest(claimed)
        except InvalidDigest:
            raise ItemFailed(f"{what}: malformed Docker-Content-Digest {claimed!r}") from None

    async def has_blob(self, repository: str, digest: Digest) -> bool:
        found = await self.request("HEAD", f"/v2/{repository}/blobs/{digest}", pull(repository),
                                   f"{self.label}: blob {digest} in {repository}", label="HEAD blobs", ok404=True)
        return found is not None

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: Digest) -> AsyncIterator[BlobStream]:
        what = f"{self.label}: blob {digest} of {repository}"
        async with AsyncExitStack() as stack:

            async def attempt() -> httpx.Response:
                context = self.client.open("GET", f"/v2/{repository}/blobs/{digest}", pull(repository),
                                           label="GET blobs")
                opened = await context.__aenter__()
                try:
                    if opened.status_code == 404:
                        raise ItemFailed(f"{what}: not found")
                    if opened.status_code >= 300:
                        self.check(what, opened, await read_limited(opened, 64 << 10))
                    if not opened.headers.get("content-length", "").isdigit():
                        raise ItemFailed(f"{what}: no Content-Length")
                except BaseException:
                    await context.__aexit__(None, None, None)  # a failed try gives its connection back now
                    raise
                stack.push_async_exit(context)
                return opened

            response = await self.call(what, attempt)
            yield BlobStream(int(response.headers["content-length"]), body_chunks(response, what))

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        """The referrers API; on a registry without it (404), the referrers tag schema's index."""
        what = f"{self.label}: referrers of {repository}@{digest}"
        path: str | None = f"/v2/{repository}/referrers/{digest}"
        found: list[dict[str, Any]] = []
        while path is not None:
            page = await self.request("GET", path, pull(repository), what, label="GET referrers", ok404=True)
            if page is None or not page[0].headers.get("content-type", "").startswith(INDEX):
                if found:
                    return found
                return await self.tag_schema_referrers(repository, digest)
            found += [d for d in json_field(page[1], "manifests") if isinstance(d, dict)]
            path = next_link(page[0], path)
        return found

    async def tag_schema_referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        index = await self.manifest(repository, referrers_tag(digest))
        if index is None:
            return []
        return [d for d in json_field(index.content, "manifests") if isinstance(d, dict)]

    # --- writing -----------------------------------------------------------------------------------

    async def mount_blob(self, repository: str, digest: Digest, source: str | None) -> bool:
        if source is None:  # a remote mounts only from a repository named
            return False
        what = f"{self.label}: mount of {digest} from {source} into {repository}"
        scope = f"{push(repository)} {pull(source)}"
        found = await self.request("POST", f"/v2/{repository}/blobs/uploads/", scope, what, label="POST uploads",
                                   params={"mount": str(digest), "from": source})
        assert found is not None
        response, _ = found
        if response.status_code == 201:
            return True
        location = response.headers.get("location")
        if location:  # 202: a session was opened instead; let it go
            async with self.client.open("DELETE", self.absolute(location), scope, label="DELETE uploads"):
                pass
        return False

    async def write_blob(self, repository: str, digest: Digest, size: int, chunks: AsyncIterator[bytes]) -> None:
        """POST a session, then the bytes: in one PUT, or in PATCHes of ``chunksize`` and a closing PUT.

        Not retried here: the body cannot be sent twice (the copier retries with a fresh stream)."""
        what = f"{self.label}: upload of {digest} ({size} bytes) to {repository}"
        found = await self.request("POST", f"/v2/{repository}/blobs/uploads/", push(repository), what,
                                   label="POST uploads")
        assert found is not None
        location = found[0].headers.get("location")
        if not location:
            raise ItemFailed(f"{what}: the remote opened an upload without a Location")
        location = self.absolute(location)
        try:
            if self.chunksize and size > self.chunksize:
                location = await self.patch_chunks(repository, location, chunks, size, self.chunksize, what)
                chunks, body_size = empty(), 0
            else:
                body_size = size
            await self.send_body("PUT", location, repository, chunks, body_size, what, {"digest": str(digest)})
        except BaseException:
            await self.cancel_upload(location, repository)
            raise

    async def patch_chunks(self, repository: str, location: str, chunks: AsyncIterator[bytes], size: int,
                           chunksize: int, what: str) -> str:
        offset = 0
        pending = bytearray()  # at most one chunk (chunksize bytes) in memory

        async def send(piece: bytes) -> str:
            nonlocal offset
            headers = {"Content-Range": f"{offset}-{offset + len(piece) - 1}"}
            answer = await self.send_body("PATCH", location, repository, piece, len(piece), what, None, headers)
            offset += len(piece)
            return self.absolute(answer.headers.get("location") or location)

        async for chunk in chunks:
            pending += chunk
            while len(pending) >= chunksize:
                location = await send(bytes(pending[:chunksize]))
                del pending[:chunksize]
        if pending:
            location = await send(bytes(pending))
        if offset != size:
            raise ItemFailed(f"{what}: the source sent {offset} bytes")
        return location

    async def send_body(self, method: str, location: str, repository: str, body: bytes | AsyncIterator[bytes],
                        size: int, what: str, params: dict[str, str] | None,
                        extra: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size), **(extra or {})}
        try:
            async with self.client.open(method, location, push(repository), label=f"{method} uploads",
                                        headers=headers, params=params, content=body) as response:
                answer = await read_limited(response, 64 << 10)
                if response.status_code == 401:  # the POST before was accepted: a token that expired since
                    self.client.auth.forget(push(repository))
                    raise Transient(f"{what}: HTTP 401 on the upload")
                self.check(what, response, answer)
                return response
        except RemoteAuthError as e:
            raise Refused(f"{self.label} refused {self.who()}: {e}") from None
        except (RemoteUnreachable, RemoteAuthUnavailable, httpx.HTTPError) as e:
            raise Transient(f"{what}: {e}") from e

    async def cancel_upload(self, location: str, repository: str) -> None:
        try:
            async with self.client.open("DELETE", location, push(repository), label="DELETE uploads"):
                pass
        except Exception as e:  # noqa: BLE001 - the remote purges abandoned uploads itself
            log.debug("replication: cancelling %s: %s", location, e)

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        what = f"{self.label}: manifest {repository}:{reference}"
        found = await self.request("PUT", f"/v2/{repository}/manifests/{reference}", push(repository), what,
                                   label="PUT manifests", headers={"Content-Type": manifest.media_type},
                                   content=manifest.content)
        assert found is not None
        return "oci-subject" in found[0].headers

    async def delete(self, repository: str, reference: str) -> bool:
        """A tag on a registry that cannot untag (Distribution 2.8 answers 405/400): its manifest goes
        by digest when no other tag names it."""
        what = f"{self.label}: delete of {repository}:{reference}"
        scope = f"repository:{repository}:delete"
        try:
            found = await self.request("DELETE", f"/v2/{repository}/manifests/{reference}", scope, what,
                                       label="DELETE manifests", ok404=True)
        except ItemFailed as e:
            if ":" in reference or not any(f"HTTP {s}" in str(e) for s in (400, 405)):
                raise
            return await self.delete_tag_by_digest(repository, reference)
        return found is not None

    async def delete_tag_by_digest(self, repository: str, tag: str) -> bool:
        digest = await self.manifest_digest(repository, tag)
        if digest is None:
            return False
        others = [t for t in await self.tags(repository) if t != tag]
        for other in others:
            if await self.manifest_digest(repository, other) == digest:
                raise ItemFailed(f"{self.label} cannot delete tag {repository}:{tag} alone (it cannot untag, and "
                                 f"tag {other} names the same manifest)")
        return await self.delete(repository, str(digest))

    def absolute(self, location: str) -> str:
        return urljoin(self.remote.url + "/", location)


def pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema: ``<alg>-<hex>`` names the index of a subject's referrers."""
    return f"{digest.algorithm}-{digest.hex}"


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def body_chunks(response: httpx.Response, what: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes(CHUNK):
            yield chunk
    except httpx.HTTPError as e:
        raise Transient(f"{what}: the download broke off: {e!r}") from e


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body within ``limit``; a larger one fails the item (a retry would get the same)."""
    try:
        return await read_within(response, limit)
    except AnswerTooLarge as e:
        raise ItemFailed(str(e)) from None


def json_field(body: bytes, key: str) -> list[Any]:
    try:
        value = json.loads(body).get(key)
    except (ValueError, AttributeError):
        raise ItemFailed(f"malformed answer: no JSON object with {key!r}") from None
    return list(value) if isinstance(value, list) else []


def error_text(body: bytes) -> str:
    """``: CODE message`` from the spec's error body, else the start of the body."""
    try:
        errors = json.loads(body).get("errors")
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        text = body[:200].decode("utf-8", "replace").strip()
        return f": {text}" if text else ""


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def next_link(response: httpx.Response, current: str) -> str | None:
    """The ``Link: <...>; rel="next"`` of a paginated answer, as a path or URL to ask next."""
    link = response.headers.get("link")
    if not link or 'rel="next"' not in link:
        return None
    target = link.split(";", 1)[0].strip().strip("<>")
    return target if target and target != current else None


def expected_digest(reference: str, claimed: str | None) -> Digest | None:
    for text in (reference if ":" in reference else None, claimed):
        if text:
            try:
                return parse_digest(text)
            except InvalidDigest:
                continue
    return None
