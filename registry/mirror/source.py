"""The upstreams as the content source of mirrored repositories (``MirroredRepository`` asks it first).

``UpstreamSource`` maps a name to its upstream and puts into storage what a request needs, by the
caching rules:

* Manifests by digest and blobs are immutable: once stored they are served with no upstream request.
* A tag is trusted for the upstream's TTL after it was last checked; the time of that check is kept in
  storage (``<repository>/_mirror/tags/<tag>/checked``) so every replica agrees.  After the TTL one
  HEAD revalidates it; when the upstream fails or rate-limits, the cached manifest is served stale.
* Whatever is stored goes through the write path (``RepositoryWriter``, as the ``mirror`` actor): a blob
  download is an upload (hashed, verified, then moved into place) teed into a local spool that every
  client waiting on it streams from.
* Concurrent requests for the same content share one upstream fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from registry.errors import RegistryError
from registry.events.metrics import mirror_requests, mirror_upstream_fetches
from registry.mediatypes import MAX_MANIFEST_SIZE
from registry.mirror.config import MirrorConfig, Upstream, parse_proxy
from registry.mirror.flight import BlobSpool, SingleFlight
from registry.mirror.upstream import MANIFEST_ACCEPT, UpstreamClient, UpstreamError, UpstreamNotFound
from registry.names import check_name
from registry.remote.client import AnswerTooLarge, read_limited
from registry.writes.actor import MIRROR_ACTOR
from registry.writes.writer import RepositoryWriter
from storage import paths
from storage.blobs import BlobUnknown, read_link
from storage.digests import Digest, InvalidDigest, digest_bytes, parse_digest
from storage.driver import PathNotFound
from storage.manifests import ManifestUnknown, TagUnknown
from storage.uploads import DigestMismatch, UploadUnknown

log = logging.getLogger("moorage.mirror")
HIT, MISS, REVALIDATED, STALE = "hit", "miss", "revalidated", "stale"
STALE_WARNING = '110 moorage "Response is Stale: the upstream could not be revalidated"'
TIMEOUT = httpx.Timeout(30.0, read=120.0)
CHUNK = 1 << 20  # upstream reads handed on at once: fewer wake-ups of the waiting readers


@dataclass(frozen=True, slots=True)
class UpstreamRoute:
    """Where a request for a mirrored repository goes: its name here and upstream."""

    upstream: Upstream
    client: UpstreamClient
    local: str
    remote: str


@dataclass(frozen=True, slots=True)
class Served:
    """A manifest now in local storage, and how it got there."""

    digest: Digest
    outcome: str
    warning: str | None = None


class UpstreamSource:
    """Routes names to upstreams and fetches, verifies and stores their content; counts the outcomes."""

    def __init__(self, config: MirrorConfig, writer: RepositoryWriter, http: httpx.AsyncClient | None = None) -> None:
        """It reads what storage holds through the stores the write path writes with."""
        self.config = config
        self.writer = writer
        self.blobs, self.manifests, self.tags = writer.blobs, writer.manifests, writer.tags
        self.driver = writer.blobs.driver
        self.http = http or httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT)
        # longest prefix first, so that "ghcr/team" wins over "ghcr"
        self.clients = [
            UpstreamClient(u, self.http) for u in sorted(config.upstreams, key=lambda u: -len(u.prefix))
        ]
        self.stats: Counter[str] = Counter()  # "manifest.hit", "blob.miss", ... (also in registry.events.metrics)
        self._manifest_flights = SingleFlight()
        self._spools: dict[tuple[str, Digest], BlobSpool] = {}
        self._downloads: set[asyncio.Task[None]] = set()

    @classmethod
    def build(cls, proxy: Mapping[str, Any], writer: RepositoryWriter) -> UpstreamSource | None:
        """The mirror configured by the raw ``proxy`` section; None when there is none."""
        config = parse_proxy(proxy)
        return None if config is None else cls(config, writer)

    @property
    def downloads_in_flight(self) -> int:
        """Blob downloads running now (a gauge for metrics; tests wait for it to drop to 0)."""
        return len(self._downloads)

    # ------------------------------------------------------------------------------------ routing

    def route(self, name: str, ns: str | None) -> UpstreamRoute | None:
        """The upstream serving ``name`` (by the containerd ``ns`` parameter, else by prefix), if any."""
        if ns:
            for client in self.clients:
                if ns in client.upstream.ns:
                    local = f"{client.upstream.prefix}/{name}" if client.upstream.prefix else name
                    return self._route(client, check_name(local), name)
        for client in self.clients:
            prefix = client.upstream.prefix
            if not prefix:
                return self._route(client, name, name)
            if name.startswith(prefix + "/"):
                return self._route(client, name, name[len(prefix) + 1 :])
        return None

    def refusal(self, name: str) -> RegistryError | None:
        """Why clients may not write to ``name`` (a repository under a mirrored prefix); None if they may."""
        route = self.route(name, None)
        if route is None:
            return None
        upstream = route.upstream
        where = f"{upstream.prefix}/" if upstream.prefix else "this registry"
        return RegistryError(
            "UNSUPPORTED", f"{where} is a read-only mirror of {upstream.url}: push to the upstream instead",
            detail={"name": name, "upstream": upstream.url},
        )

    @staticmethod
    def _route(client: UpstreamClient, local: str, remote: str) -> UpstreamRoute:
        if client.upstream.docker_hub and "/" not in remote:
            remote = f"library/{remote}"  # Docker Hub's official images, as the docker CLI names them
        return UpstreamRoute(client.upstream, client, local, remote)

    def record(self, kind: str, route: UpstreamRoute, reference: str, outcome: str, note: str = "") -> None:
        self.stats[f"{kind}.{outcome}"] += 1
        mirror_requests.labels(kind, outcome).inc()
        log.info("mirror %s %s@%s %s%s (upstream %s/%s)", kind, route.local, reference, outcome, note,
                 route.upstream.url, route.remote)

    # ---------------------------------------------------------------------------------- manifests

    async def manifest_by_digest(self, route: UpstreamRoute, digest: Digest) -> Served:
        if await self.manifests.exists(route.local, digest):
            self.record("manifest", route, str(digest), HIT)
            return Served(digest, HIT)
        key = ("manifest", route.local, digest)
        shared = self._manifest_flights.joined(key)
        try:
            await self._manifest_flights.run(key, lambda: self._fetch_manifest(route, str(digest), digest))
        except UpstreamNotFound:
            raise ManifestUnknown(str(digest)) from None
        except UpstreamError as e:
            raise upstream_failure(route, e) from None
        self.record("manifest", route, str(digest), MISS, " (shared)" if shared else "")
        return Served(digest, MISS)

    async def manifest_by_tag(self, route: UpstreamRoute, tag: str) -> Served:
        cached = await self._cached_tag(route.local, tag)
        if cached is not None:
            checked = await self._checked(route.local, tag)
            if checked is not None and time.time() - checked < route.upstream.ttl:
                self.record("manifest", route, tag, HIT)
                return Served(cached, HIT)
        key = ("tag", route.local, tag)
        try:
            served = await self._manifest_flights.run(key, lambda: self._refresh_tag(route, tag, cached))
        except UpstreamNotFound:
            raise TagUnknown(tag) from None
        except UpstreamError as e:
            if cached is None:
                raise upstream_failure(route, e) from None
            log.warning("mirror: serving %s:%s stale: %s", route.local, tag, e)
            served = Served(cached, STALE, STALE_WARNING)
        self.record("manifest", route, tag, served.outcome)
        return served

    async def _cached_tag(self, name: str, tag: str) -> Digest | None:
        try:
            digest = await self.tags.resolve(name, tag)
        except TagUnknown:
            return None
        return digest if await self.manifests.exists(name, digest) else None

    async def _checked(self, name: str, tag: str) -> float | None:
        try:
            return float(json.loads(await self.driver.get_content(paths.mirror_tag_checked(name, tag)))["checked"])
        except (PathNotFound, ValueError, KeyError, TypeError):
            return None

    async def _mark_checked(self, name: str, tag: str) -> None:
        checked = json.dumps({"checked": time.time()}).encode()
        await self.driver.put_content(paths.mirror_tag_checked(name, tag), checked)

    async def _refresh_tag(self, route: UpstreamRoute, tag: str, cached: Digest | None) -> Served:
        """One HEAD when we hold a copy (GET only when the tag moved), else a GET."""
        if cached is not None:
            headers = {"Accept": MANIFEST_ACCEPT}
            async with route.client.open("HEAD", route.remote, "manifests", tag, headers) as response:
                current = response.headers.get("docker-content-digest")
            if current == str(cached):
                await self._mark_checked(route.local, tag)
                return Served(cached, REVALIDATED)
        digest = await self._fetch_manifest(route, tag, None)
        await self.writer.tag(route.local, tag, digest, MIRROR_ACTOR)
        await self._mark_checked(route.local, tag)
        return Served(digest, MISS)

    async def _fetch_manifest(self, route: UpstreamRoute, reference: str, expected: Digest | None) -> Digest:
        """GET a manifest upstream, verify its digest and store it in the repository."""
        async with route.client.open("GET", route.remote, "manifests", reference,
                                     {"Accept": MANIFEST_ACCEPT}) as response:
            try:
                content = await read_limited(response, MAX_MANIFEST_SIZE)
            except AnswerTooLarge:
                raise UpstreamError(f"manifest {route.remote}:{reference} is too large") from None
            claimed = response.headers.get("docker-content-digest")
        if expected is None:
            try:
                expected = parse_digest(claimed) if claimed else None
            except InvalidDigest:
                expected = None
        digest = digest_bytes(content, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise UpstreamError(f"manifest {route.remote}:{reference} is {digest}, not {expected}")
        await self.writer.put_manifest(route.local, str(digest), content, None, MIRROR_ACTOR)
        mirror_upstream_fetches.labels("manifest", "ok").inc()
        return digest

    # -------------------------------------------------------------------------------------- blobs

    async def _linked(self, name: str, digest: Digest) -> bool:
        linked = await read_link(self.driver, paths.layer_link(name, digest)) == digest
        return linked and await self.blobs.exists(digest)

    async def _adopt(self, route: UpstreamRoute, digest: Digest) -> bool:
        """Link a blob stored for another repository once the upstream confirms this one has it too."""
        if not await self.blobs.exists(digest):
            return False
        async with route.client.open("HEAD", route.remote, "blobs", str(digest)):
            pass
        return await self.writer.mount(route.local, digest, None, MIRROR_ACTOR)

    async def blob(self, route: UpstreamRoute, digest: Digest) -> BlobSpool | None:
        """None when the blob is in the repository's storage; else the spool of its download.

        The caller must open its reader on the spool before it awaits anything: a finished spool
        is removed from disk (the blob is then in storage).
        """
        try:
            if await self._linked(route.local, digest):
                self.record("blob", route, str(digest), HIT)
                return None
            key = (route.local, digest)
            spool = self._spools.get(key)
            shared = spool is not None
            if spool is None:
                if await self._adopt(route, digest):
                    self.record("blob", route, str(digest), HIT, " (linked from storage)")
                    return None
                spool = self._spools.get(key)  # another request may have started it meanwhile
                shared = spool is not None
                if spool is None:
                    spool = self._start_download(route, digest, key)
            await asyncio.shield(spool.started)
        except UpstreamNotFound:
            raise BlobUnknown(str(digest)) from None
        except UpstreamError as e:
            raise upstream_failure(route, e) from None
        if spool.finished:
            if spool.error is not None:
                raise upstream_failure(route, UpstreamError(str(spool.error)))
            self.record("blob", route, str(digest), HIT, " (download just finished)")
            return None
        self.record("blob", route, str(digest), MISS, " (shared)" if shared else "")
        return spool

    async def blob_size(self, route: UpstreamRoute, digest: Digest) -> int | None:
        """For HEAD: None when stored here, else the upstream's size (nothing is downloaded)."""
        try:
            if await self._linked(route.local, digest) or await self._adopt(route, digest):
                self.record("blob", route, str(digest), HIT)
                return None
            spool = self._spools.get((route.local, digest))
            if spool is not None and spool.size is not None:
                return spool.size
            async with route.client.open("HEAD", route.remote, "blobs", str(digest)) as response:
                length = response.headers.get("content-length", "")
        except UpstreamNotFound:
            raise BlobUnknown(str(digest)) from None
        except UpstreamError as e:
            raise upstream_failure(route, e) from None
        self.record("blob", route, str(digest), MISS, " (HEAD)")
        if not length.isdigit():
            raise upstream_failure(route, UpstreamError("HEAD of a blob without Content-Length"))
        return int(length)

    def _start_download(self, route: UpstreamRoute, digest: Digest, key: tuple[str, Digest]) -> BlobSpool:
        spool = BlobSpool(self.config.spooldir)
        self._spools[key] = spool
        task = asyncio.ensure_future(self._download(route, digest, spool, key))
        self._downloads.add(task)
        task.add_done_callback(self._downloads.discard)
        return spool

    async def _download(
        self, route: UpstreamRoute, digest: Digest, spool: BlobSpool, key: tuple[str, Digest]
    ) -> None:
        """Runs on its own: a client going away does not stop a download others (or later pulls) need."""
        upload = None
        started = time.monotonic()
        try:
            async with route.client.open("GET", route.remote, "blobs", str(digest)) as response:
                length = response.headers.get("content-length", "")
                spool.start(int(length) if length.isdigit() else None)
                upload = await self.writer.start_upload(route.local, digest.algorithm, MIRROR_ACTOR)
                await self.writer.commit_upload(upload, digest, spool.tee(response.aiter_bytes(CHUNK)), MIRROR_ACTOR)
                upload = None  # committed: the session is gone and the blob linked
        except BaseException as e:  # noqa: BLE001 - every failure must reach the waiting readers
            mirror_upstream_fetches.labels("blob", "error").inc()
            if isinstance(e, DigestMismatch):
                e = UpstreamError(f"blob {digest} from {route.upstream.url} failed verification: {e}")
            spool.finish(e)
            self._spools.pop(key, None)  # before any await: new requests start afresh
            if not isinstance(e, UpstreamNotFound):
                log.warning("mirror: download of %s for %s failed: %s", digest, route.local, e)
            if upload is not None:
                await self._discard(upload.name, upload.id)
            if not isinstance(e, Exception):
                raise
        else:
            mirror_upstream_fetches.labels("blob", "ok").inc()
            spool.finish()
            self._spools.pop(key, None)
            log.info("mirror: stored %s for %s (%d bytes, %.2fs)", digest, route.local, spool.written,
                     time.monotonic() - started)

    async def _discard(self, name: str, upload_id: str) -> None:
        try:
            await self.writer.cancel_upload(name, upload_id, MIRROR_ACTOR)
        except UploadUnknown:
            pass

    # --------------------------------------------------------------------------------------- tags

    async def tag_list(self, route: UpstreamRoute, query: dict[str, str]) -> tuple[list[str], bool]:
        """The upstream's tag list page and whether it has more (raises UpstreamNotFound / UpstreamError)."""
        async with route.client.open("GET", route.remote, "tags", "list", params=query) as response:
            body = await response.aread()
            more = "link" in response.headers
        try:
            doc = json.loads(body)
            tags = [t for t in doc.get("tags") or [] if isinstance(t, str)]
        except (ValueError, AttributeError) as e:
            raise UpstreamError(f"malformed tag list from {route.upstream.url}: {e}") from e
        self.record("tags", route, "list", MISS)
        return tags, more

    async def close(self) -> None:
        await self._manifest_flights.close()
        for task in list(self._downloads):
            task.cancel()
        await asyncio.gather(*self._downloads, return_exceptions=True)
        await self.http.aclose()


def upstream_failure(route: UpstreamRoute, error: UpstreamError) -> RegistryError:
    """The spec's error for an upstream we could not use and have no copy for."""
    message = f"upstream {route.upstream.url} unavailable: {error}"
    if error.status == 429:
        return RegistryError("TOOMANYREQUESTS", message)
    return RegistryError("UNAVAILABLE", message)

