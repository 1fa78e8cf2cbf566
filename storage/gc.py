"""Online mark-and-sweep garbage collection; docs/gc.md explains why a push running meanwhile is safe.

Mark, per repository: the tagged manifests (every manifest unless ``delete_untagged``), everything
they reference (config, layers, index children, recursively) and the manifests whose ``subject`` is
kept (signatures and SBOMs live as long as their image).  Sweep: the untagged manifests nothing kept
needs (with ``delete_untagged``), the ``_layers`` links nothing kept in the repository references and
the blobs nothing kept anywhere references.  Nothing used since the cut-off (the start of the run
minus the grace window) is removed: a push marks what it relies on (``BlobStore.relied_on``), and each
object's age is read again right before it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from storage import paths
from storage.blobs import read_link
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import FileInfo, PathNotFound, StorageDriver
from storage.lease import Lease, LeaseLost
from storage.usage import UsageLedger, namespace_of

log = logging.getLogger("moorage.gc")
T = TypeVar("T")
CONCURRENCY = 16
# S3 keeps modification times in whole seconds, filesystems in coarse clock ticks: an object used
# just after the run started may carry a time slightly before it
CLOCK_SLACK = 1.0
LEASE_NAME = "gc"


@dataclass(frozen=True, slots=True)
class References:
    """What one stored manifest points at."""

    blobs: frozenset[Digest]  # config, layers, artifact blobs (schema 1 ``fsLayers`` too)
    children: frozenset[Digest]  # an index's manifests
    subject: Digest | None


def references(content: bytes) -> References | None:
    """The digests a manifest names; None when it is no JSON object.

    Lenient on purpose: GC must keep whatever a manifest might reference, whichever registry wrote it.
    """
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    blobs = _digests([doc.get("config")]) | _digests(_list(doc, "layers")) | _digests(_list(doc, "blobs"))
    blobs |= _digests({"digest": d.get("blobSum")} for d in _list(doc, "fsLayers") if isinstance(d, dict))
    subject = _digests([doc.get("subject")])
    return References(frozenset(blobs), frozenset(_digests(_list(doc, "manifests"))), next(iter(subject), None))


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    return value if isinstance(value, list) else []


def _digests(descriptors: Iterable[Any]) -> set[Digest]:
    found = set()
    for descriptor in descriptors:
        if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
            try:
                found.add(parse_digest(descriptor["digest"]))
            except InvalidDigest:
                continue
    return found


@dataclass(slots=True)
class RepositoryFiles:
    """One repository's links as the scan found them, with their modification times."""

    name: str
    tags: dict[str, float] = field(default_factory=dict)  # tag -> when it was last pushed or moved
    revisions: dict[Digest, float] = field(default_factory=dict)
    layers: dict[Digest, float] = field(default_factory=dict)
    tag_index: dict[Digest, list[str]] = field(default_factory=dict)  # revision -> tags whose history has it


async def scan_repositories(driver: StorageDriver) -> AsyncIterator[RepositoryFiles]:
    """Every repository with its tags, revisions and layer links, in one walk of ``repositories/``."""
    found: dict[str, RepositoryFiles] = {}
    base = len(paths.REPOSITORIES) + 1
    try:
        async for info in driver.walk(paths.REPOSITORIES):
            if info.is_dir or not info.path.endswith("/link"):
                continue
            parts = info.path[base:].split("/")
            cut = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if not cut:
                continue
            name, rest = "/".join(parts[:cut]), parts[cut:]
            repo = found.get(name)
            if repo is None:
                repo = found[name] = RepositoryFiles(name)
            _classify(repo, rest, info)
    except PathNotFound:
        return
    for repo in found.values():
        yield repo


def _classify(repo: RepositoryFiles, rest: list[str], info: FileInfo) -> None:
    if len(rest) == 4 and rest[0] == "_layers":
        digest = _digest(rest[1], rest[2])
        if digest is not None:
            repo.layers[digest] = info.modified
    elif len(rest) == 5 and rest[:2] == ["_manifests", "revisions"]:
        digest = _digest(rest[2], rest[3])
        if digest is not None:
            repo.revisions[digest] = info.modified
    elif len(rest) == 5 and rest[:2] == ["_manifests", "tags"] and rest[3] == "current":
        repo.tags[rest[2]] = info.modified
    elif len(rest) == 7 and rest[:2] == ["_manifests", "tags"] and rest[3] == "index":
        digest = _digest(rest[4], rest[5])
        if digest is not None:
            repo.tag_index.setdefault(digest, []).append(rest[2])


def _digest(algorithm: str, hex_: str) -> Digest | None:
    try:
        return parse_digest(f"{algorithm}:{hex_}")
    except InvalidDigest:
        return None


class Progress(Protocol):
    """Where GC reports how far it is (a terminal bar, log lines, nothing)."""

    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass


@dataclass(slots=True)
class GCResult:
    dry_run: bool = False
    repositories: int = 0
    manifests_kept: int = 0
    manifests_removed: int = 0
    blobs_kept: int = 0
    blobs_removed: int = 0
    bytes_kept: int = 0
    bytes_freed: int = 0
    links_removed: int = 0
    tags_removed: list[tuple[str, str, Digest]] = field(default_factory=list)  # by ``expire``: repo, tag, target
    seconds: float = 0.0
    # per repository, the blobs its kept manifests reference (the manifests themselves included)
    referenced: dict[str, set[Digest]] = field(default_factory=dict, repr=False)
    sizes: dict[Digest, int] = field(default_factory=dict, repr=False)  # of every blob left
    # per repository, the manifests and layer links left
    linked: dict[str, set[Digest]] = field(default_factory=dict, repr=False)

    def namespaces(self) -> dict[str, dict[Digest, int]]:
        """Per namespace, the blobs its repositories link after the run and their sizes."""
        found: dict[str, dict[Digest, int]] = {}
        for name, digests in self.linked.items():
            blobs = found.setdefault(namespace_of(name), {})
            blobs.update((d, self.sizes[d]) for d in digests if d in self.sizes)
        return found

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{self.repositories} repositories; manifests: {self.manifests_kept} kept, {self.manifests_removed} "
            f"{verb}; blobs: {self.blobs_kept} kept ({human_size(self.bytes_kept)}), {self.blobs_removed} {verb} "
            f"({human_size(self.bytes_freed)} {'to free' if self.dry_run else 'freed'}); layer links: "
            f"{self.links_removed} {verb}; " + (f"tags: {len(self.tags_removed)} {verb}; " if self.tags_removed else "")
            + f"{self.seconds:.1f}s"
        )


def human_size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


Expire = Callable[[str, dict[str, float], float], list[str]]


class GCBusy(Exception):
    """Another process holds the GC lease."""


class GarbageCollector:
    def __init__(self, driver: StorageDriver, *, delete_untagged: bool = False, dry_run: bool = False,
                 grace: float = 3600.0, progress: Progress | None = None, lease: Lease | None = None,
                 expire: Expire | None = None, ledger: UsageLedger | None = None) -> None:
        """``expire(repository, {tag: last pushed}, now)`` names tags to remove first (retention); the
        manifests they named are collected in the same run unless something still needs them."""
        self.driver = driver
        self.expire = expire
        self.ledger = ledger  # reconciled with what the run leaves linked (quotas)
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.grace = grace
        self.progress = progress or NoProgress()
        self.lease = lease if lease is not None else Lease(driver, LEASE_NAME)
        self.cutoff = 0.0
        self._lost: LeaseLost | None = None
        self._refs: dict[Digest, References | None] = {}
        self._marked: set[Digest] = set()
        self._local = driver.local_path(paths.ROOT) is not None

    async def run(self) -> GCResult:
        """One collection under the lease; raises GCBusy when another process runs one."""
        started = time.time()  # before the lease settles: the cut-off must precede the mark
        if not await self.lease.acquire():
            holder = await self.lease.current()
            raise GCBusy(f"another garbage collection holds the lease ({(holder or {}).get('holder', '?')})")
        renewing = asyncio.create_task(self._renew())
        try:
            return await self._collect(started)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.lease.release()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease.ttl / 3)
            try:
                await self.lease.renew()
            except LeaseLost as e:
                self._lost = e
                return
            except Exception:  # noqa: BLE001 - a storage hiccup: the lease lasts, retry at the next tick
                log.warning("renewing the GC lease failed", exc_info=True)

    def _check_lease(self) -> None:
        if self._lost is not None:
            raise self._lost

    async def _collect(self, started: float) -> GCResult:
        self.cutoff = started - self.grace - CLOCK_SLACK
        result = GCResult(dry_run=self.dry_run)
        self.progress.phase("scan repositories", None)
        repositories = []
        async for repo in scan_repositories(self.driver):
            repositories.append(repo)
            self.progress.advance()
        result.repositories = len(repositories)
        expired: dict[str, set[Digest]] = {}
        if self.expire is not None:
            self.progress.phase("expire tags", len(repositories))

            async def expire(repo: RepositoryFiles) -> None:
                expired[repo.name] = await self._expire_tags(repo, started, result)
                self.progress.advance()

            await _bounded(repositories, expire)
            self._check_lease()

        self.progress.phase("mark", len(repositories))
        doomed: list[tuple[RepositoryFiles, Digest]] = []
        stale_links: list[tuple[str, Digest]] = []

        async def mark(repo: RepositoryFiles) -> None:
            kept, referenced, safe = await self._mark_repository(repo, expired.get(repo.name, set()))
            result.referenced[repo.name] = referenced
            result.linked[repo.name] = set(repo.revisions) | set(repo.layers)
            result.manifests_kept += len(kept)
            doomed.extend((repo, d) for d in repo.revisions if d not in kept)
            if safe:
                stale_links.extend((repo.name, d) for d, modified in repo.layers.items()
                                   if d not in referenced and modified < self.cutoff)
            self.progress.advance()

        await _bounded(repositories, mark)
        self._check_lease()

        self.progress.phase("sweep manifests", len(doomed))

        async def remove_manifest(item: tuple[RepositoryFiles, Digest]) -> None:
            if await self._remove_manifest(*item):
                result.manifests_removed += 1
                result.linked[item[0].name].discard(item[1])
            else:
                result.manifests_kept += 1
            self.progress.advance()

        await _bounded(doomed, remove_manifest)
        self._check_lease()

        self.progress.phase("sweep layer links", len(stale_links))

        async def remove_link(item: tuple[str, Digest]) -> None:
            if await self._remove_if_unused(paths.layer_link(*item)):
                result.links_removed += 1
                result.linked[item[0]].discard(item[1])
            self.progress.advance()

        await _bounded(stale_links, remove_link)
        self._check_lease()

        self.progress.phase("scan blobs", None)
        candidates = []
        async for digest, size, last_used, files in scan_blobs(self.driver):
            if digest is not None and digest in self._marked:
                result.blobs_kept += 1
                result.bytes_kept += size
                result.sizes[digest] = size
            elif last_used < self.cutoff:
                candidates.append((digest, size, files))
            elif digest is not None:
                result.blobs_kept += 1  # unreferenced but used recently: a push in flight
                result.bytes_kept += size
                result.sizes[digest] = size
            self.progress.advance()
        self._check_lease()

        self.progress.phase("sweep blobs", len(candidates))

        async def remove_blob(item: tuple[Digest | None, int, list[str]]) -> None:
            digest, size, files = item
            if await self._remove_blob(files):
                if digest is not None:
                    result.blobs_removed += 1
                    result.bytes_freed += size
            elif digest is not None:
                result.blobs_kept += 1
                result.bytes_kept += size
                result.sizes[digest] = size
            self.progress.advance()

        await _bounded(candidates, remove_blob)
        if self.ledger is not None and not self.dry_run:
            self.progress.phase("reconcile usage", None)
            await self.ledger.reconcile(result.namespaces(), started)
        result.seconds = time.time() - started
        return result

    # --- mark ----------------------------------------------------------------------------------------

    async def _references(self, digest: Digest) -> References | None:
        if digest not in self._refs:
            try:
                content = await self.driver.get_content(paths.blob_data(digest))
            except PathNotFound:
                content = b""
            self._refs[digest] = references(content)
        return self._refs[digest]

    async def _expire_tags(self, repo: RepositoryFiles, now: float, result: GCResult) -> set[Digest]:
        """Remove the tags ``expire`` names (unless pushed again since the scan); their targets."""
        assert self.expire is not None
        targets = set()
        for tag in self.expire(repo.name, dict(repo.tags), now):
            digest = await read_link(self.driver, paths.tag_current_link(repo.name, tag))
            if digest is None:
                continue
            if not self.dry_run:
                self._check_lease()
                try:
                    if (await self.driver.stat(paths.tag_current_link(repo.name, tag))).modified >= self.cutoff:
                        continue  # pushed again meanwhile
                    await self.driver.delete(paths.tag_dir(repo.name, tag))
                except PathNotFound:
                    continue
            del repo.tags[tag]
            targets.add(digest)
            result.tags_removed.append((repo.name, tag, digest))
        return targets

    async def _mark_repository(self, repo: RepositoryFiles, expired: set[Digest]
                               ) -> tuple[set[Digest], set[Digest], bool]:
        """The repository's kept manifests, the blobs they reference, and whether every kept manifest
        could be read (when not, no layer link of the repository is removed).

        Untagged manifests may go with ``delete_untagged``, or when a tag ``expire`` removed named them.
        """
        tagged = set()
        for tag in repo.tags:
            digest = await read_link(self.driver, paths.tag_current_link(repo.name, tag))
            if digest is not None:
                tagged.add(digest)
                self._marked.add(digest)  # even without a revision: whatever a tag names stays
        roots = {d for d in repo.revisions if d in tagged or repo.revisions[d] >= self.cutoff
                 or not (self.delete_untagged or d in expired)}
        kept: set[Digest] = set()
        referenced: set[Digest] = set()
        safe = await self._keep(repo, roots, kept, referenced)
        if len(roots) < len(repo.revisions):
            # referrers of kept manifests are kept, and what they reference, until nothing changes
            while True:
                more = set()
                for digest in repo.revisions.keys() - kept:
                    refs = await self._references(digest)
                    if refs is not None and refs.subject in kept:
                        more.add(digest)
                if not more:
                    break
                safe &= await self._keep(repo, more, kept, referenced)
        referenced |= kept
        self._marked |= referenced
        return kept, referenced, safe

    async def _keep(self, repo: RepositoryFiles, roots: set[Digest], kept: set[Digest],
                    referenced: set[Digest]) -> bool:
        safe = True
        pending = list(roots)
        while pending:
            digest = pending.pop()
            if digest in kept:
                continue
            kept.add(digest)
            refs = await self._references(digest)
            if refs is None:
                safe = False
                continue
            referenced |= refs.blobs | refs.children
            pending += [child for child in refs.children if child in repo.revisions and child not in kept]
        return safe

    # --- sweep ---------------------------------------------------------------------------------------

    async def _remove_manifest(self, repo: RepositoryFiles, digest: Digest) -> bool:
        """Remove an untagged revision (and its tag-history entries and referrers entry) unless it was
        pushed or relied on since the cut-off."""
        if not await self._remove_if_unused(paths.revision_link(repo.name, digest)):
            return False
        if not self.dry_run:
            for tag in repo.tag_index.get(digest, ()):
                await self._delete_files([paths.tag_index_link(repo.name, tag, digest)])
            refs = self._refs.get(digest)
            if refs is not None and refs.subject is not None:
                await self._delete_files([paths.referrer_descriptor(repo.name, refs.subject, digest)])
        return True

    async def _remove_if_unused(self, link: str) -> bool:
        """Delete a link not modified since the cut-off (read again now); True when it is gone."""
        self._check_lease()
        try:
            info = await self.driver.stat(link)
        except PathNotFound:
            return False
        if info.modified >= self.cutoff:
            return False
        if not self.dry_run:
            await self._delete_files([link])
        return True

    async def _remove_blob(self, files: list[str]) -> bool:
        """Delete a blob directory unless it was used since the cut-off (read again now)."""
        self._check_lease()
        directory = files[0].rpartition("/")[0]
        try:
            now = [info async for info in self.driver.walk(directory) if not info.is_dir]
        except PathNotFound:
            return False
        if max(info.modified for info in now) >= self.cutoff:
            return False
        if not self.dry_run:
            await self._delete_files([info.path for info in now])
        return True

    async def _delete_files(self, files: list[str]) -> None:
        """Delete objects; on local disk their directory goes too (Distribution removes directories)."""
        if self._local:
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(files[0].rpartition("/")[0])
            return
        for path in files:
            await self.driver.delete_file(path)


async def scan_blobs(driver: StorageDriver) -> AsyncIterator[tuple[Digest | None, int, float, list[str]]]:
    """Each blob directory in one walk of ``blobs/``: its digest (None without data), size, last use
    (the newest of ``data`` and ``lastused``) and files."""
    current: str | None = None
    files: dict[str, FileInfo] = {}
    try:
        async for info in driver.walk(paths.BLOBS):
            if info.is_dir:
                continue
            directory, _, name = info.path.rpartition("/")
            if directory != current:
                if current is not None and files:
                    yield _blob_entry(current, files)
                current, files = directory, {}
            files[name] = info
    except PathNotFound:
        return
    if current is not None and files:
        yield _blob_entry(current, files)


def _blob_entry(directory: str, files: dict[str, FileInfo]) -> tuple[Digest | None, int, float, list[str]]:
    parts = directory.rsplit("/", 3)
    data = files.get("data")
    digest = _digest(parts[-3], parts[-1]) if data is not None and len(parts) == 4 else None
    return digest, data.size if data is not None else 0, max(i.modified for i in files.values()), \
        [i.path for i in files.values()]


async def _bounded(items: list[T], work: Callable[[T], Awaitable[None]], limit: int = CONCURRENCY) -> None:
    """Run ``work`` over ``items``, ``limit`` at a time (S3 requests overlap; the filesystem is cheap)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
