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

from storage import metrics, paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import FileInfo, PathNotFound, StorageDriver, StorageError
from storage.lease import Lease, LeaseLost
from storage.tree import RepositoryTree
from storage.usage import UsageLedger, namespace_of

log = logging.getLogger("moorage.gc")
T = TypeVar("T")
CONCURRENCY = 16
RELEASE_WAIT = 10.0  # seconds a run gives the release of its lease
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
    """One repository's tags, revisions and layer links as the walk found them."""

    name: str
    tags: dict[str, Digest] = field(default_factory=dict)  # tag -> the manifest it points at
    revisions: set[Digest] = field(default_factory=set)
    layers: set[Digest] = field(default_factory=set)


async def repository_names(tree: RepositoryTree) -> list[str]:
    """Every repository with manifests or layer links (a first push that stopped before its manifest)."""
    names = {name async for name in tree.repositories()}
    names |= {name async for name in tree.repositories(marker=paths.LAYERS)}
    return sorted(names)


async def read_repository(tree: RepositoryTree, name: str) -> RepositoryFiles:
    repo = RepositoryFiles(name, revisions=set(await tree.revisions(name)), layers=set(await tree.layers(name)))
    for tag in await tree.tags(name):
        digest = await tree.tag_current(name, tag)
        if digest is not None:
            repo.tags[tag] = digest
    return repo


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
    # kept only for a usage ledger (quotas): the size of every blob left, and per repository the
    # manifests and layer links left
    sizes: dict[Digest, int] = field(default_factory=dict, repr=False)
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


class TagExpiry(Protocol):
    """Retention: which tags of a repository expire (``registry.maintenance.retention.Retention``)."""

    def applies(self, name: str) -> bool: ...

    def expired(self, name: str, tags: dict[str, float], now: float) -> list[str]: ...


class GCBusy(Exception):
    """Another process holds the GC lease."""


class GarbageCollector:
    def __init__(self, driver: StorageDriver, *, delete_untagged: bool = False, dry_run: bool = False,
                 grace: float = 3600.0, progress: Progress | None = None, lease: Lease | None = None,
                 expire: TagExpiry | None = None, ledger: UsageLedger | None = None) -> None:
        """``expire`` names tags to remove first (retention); the manifests they named are collected in
        the same run unless something still needs them."""
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
        self._tree = RepositoryTree(driver)

    async def run(self) -> GCResult:
        """One collection under the lease; raises GCBusy when another process runs one."""
        started = time.time()  # before the lease settles: the cut-off must precede the mark
        if not await self.lease.acquire():
            holder = await self.lease.current()
            raise GCBusy(f"another garbage collection holds the lease ({(holder or {}).get('holder', '?')})")
        renewing = asyncio.create_task(self._renew())
        mode = "retention" if self.expire is not None else "gc"
        try:
            result = await self._collect(started)
        except Exception:
            metrics.gc_finished(mode, 0, 0, 0, time.time() - started, error=True)
            raise
        else:
            if not result.dry_run:
                metrics.gc_finished(mode, result.blobs_removed, result.manifests_removed, result.bytes_freed,
                                    result.seconds)
            return result
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:  # bounded: a run cut short (a shutdown) must not hang on storage; the lease then expires
                await asyncio.wait_for(self.lease.release(), RELEASE_WAIT)
            except (TimeoutError, OSError, StorageError) as e:
                log.warning("releasing the GC lease failed (it expires in %gs): %s", self.lease.ttl, e)

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
        self.progress.phase("list repositories", None)
        names = await repository_names(self._tree)
        result.repositories = len(names)
        self.progress.advance(len(names))
        self._check_lease()

        self.progress.phase("mark", len(names))
        doomed: list[tuple[RepositoryFiles, Digest]] = []
        stale_links: list[tuple[str, Digest]] = []

        async def mark(name: str) -> None:
            repo = await read_repository(self._tree, name)
            expired = set()
            if self.expire is not None and self.expire.applies(name):
                expired = await self._expire_tags(repo, started, result)
            kept, referenced, safe = await self._mark_repository(repo, expired)
            if self.ledger is not None:
                result.linked[name] = repo.revisions | repo.layers
            result.manifests_kept += len(kept)
            doomed.extend((repo, d) for d in repo.revisions if d not in kept)
            if safe:
                stale_links.extend((name, d) for d in repo.layers - referenced)
            self.progress.advance()

        await _bounded(names, mark)
        self._check_lease()

        self.progress.phase("sweep manifests", len(doomed))

        async def remove_manifest(item: tuple[RepositoryFiles, Digest]) -> None:
            if await self._remove_manifest(*item):
                result.manifests_removed += 1
                result.linked.get(item[0].name, set()).discard(item[1])
            else:
                result.manifests_kept += 1
            self.progress.advance()

        await _bounded(doomed, remove_manifest)
        self._check_lease()

        self.progress.phase("sweep layer links", len(stale_links))

        async def remove_link(item: tuple[str, Digest]) -> None:
            if await self._remove_if_unused(paths.layer_link(*item)):
                result.links_removed += 1
                result.linked.get(item[0], set()).discard(item[1])
            self.progress.advance()

        await _bounded(stale_links, remove_link)
        self._check_lease()

        self.progress.phase("scan blobs", None)
        candidates = []
        async for digest, size, last_used, files in self._tree.blob_files():
            if digest is not None and digest in self._marked:
                result.blobs_kept += 1
                result.bytes_kept += size
                self._size(result, digest, size)
            elif last_used < self.cutoff:
                candidates.append((digest, size, files))
            elif digest is not None:
                result.blobs_kept += 1  # unreferenced but used recently: a push in flight
                result.bytes_kept += size
                self._size(result, digest, size)
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
                self._size(result, digest, size)
            self.progress.advance()

        await _bounded(candidates, remove_blob)
        if self.ledger is not None and not self.dry_run:
            self.progress.phase("reconcile usage", None)
            await self.ledger.reconcile(result.namespaces(), started)
        result.seconds = time.time() - started
        return result

    def _size(self, result: GCResult, digest: Digest, size: int) -> None:
        if self.ledger is not None:
            result.sizes[digest] = size

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
        """Remove the tags retention expires (unless pushed again since the run started); their targets."""
        assert self.expire is not None
        ages = {}
        for tag in repo.tags:
            with contextlib.suppress(PathNotFound):
                ages[tag] = (await self.driver.stat(paths.tag_current_link(repo.name, tag))).modified
        targets = set()
        for tag in self.expire.expired(repo.name, ages, now):
            if not self.dry_run and not await self._remove_tag(repo.name, tag):
                continue  # pushed again meanwhile
            digest = repo.tags.pop(tag)
            targets.add(digest)
            result.tags_removed.append((repo.name, tag, digest))
        return targets

    async def _mark_repository(self, repo: RepositoryFiles, expired: set[Digest]
                               ) -> tuple[set[Digest], set[Digest], bool]:
        """The repository's kept manifests, the blobs they reference, and whether every kept manifest
        could be read (when not, no layer link of the repository is removed).

        Untagged manifests may go with ``delete_untagged``, or when a tag ``expire`` removed named them.
        """
        tagged = set(repo.tags.values())
        self._marked |= tagged  # even without a revision: whatever a tag names stays
        roots = set()
        for digest in repo.revisions:
            if digest in tagged or not (self.delete_untagged or digest in expired):
                roots.add(digest)
            elif await self._modified(paths.revision_link(repo.name, digest)) >= self.cutoff:
                roots.add(digest)  # pushed since the cut-off: maybe an index's child, the index to come
        kept: set[Digest] = set()
        referenced: set[Digest] = set()
        safe = await self._keep(repo, roots, kept, referenced)
        if len(roots) < len(repo.revisions):
            # referrers of kept manifests are kept, and what they reference, until nothing changes
            while True:
                more = set()
                for digest in repo.revisions - kept:
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
            for tag in repo.tags:
                if digest in await self._tree.tag_index(repo.name, tag):
                    await self._delete_files([paths.tag_index_link(repo.name, tag, digest)])
            refs = self._refs.get(digest)
            if refs is not None and refs.subject is not None:
                await self._delete_files([paths.referrer_descriptor(repo.name, refs.subject, digest)])
        return True

    async def _remove_tag(self, name: str, tag: str) -> bool:
        """Remove a tag unless it was pushed since the cut-off, as ``_condemn`` does (the pushing side
        is ``TagStore.confirm``)."""
        self._check_lease()
        current = paths.tag_current_link(name, tag)
        marker = paths.condemned(paths.tag_dir(name, tag))
        await self._mark(marker)
        if not 0 < await self._modified(current) < self.cutoff:
            await self.driver.delete_file(marker)
            return False
        await self.driver.delete_file(current)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(paths.tag_dir(name, tag))
        return True

    async def _modified(self, path: str) -> float:
        try:
            return (await self.driver.stat(path)).modified
        except PathNotFound:
            return 0.0

    async def _remove_if_unused(self, link: str) -> bool:
        """Delete a link (layer, revision) unless it was written or relied on since the cut-off."""
        return await self._condemn(link.rpartition("/")[0], first=link)

    async def _remove_blob(self, files: list[str]) -> bool:
        """Delete a blob directory unless the blob was stored or relied on since the cut-off."""
        directory = files[0].rpartition("/")[0]
        return await self._condemn(directory, first=f"{directory}/data")

    async def _condemn(self, directory: str, first: str) -> bool:
        """Delete the objects of ``directory`` unless one was modified since the cut-off; True when gone.

        A ``condemned`` marker is written (1), the objects' age read (2), then ``first`` deleted, the
        rest, the marker last (3).  A push that relied on the objects and then finds them present and
        unmarked (``BlobStore.usable``) did so before (1), so (2) sees its touch: they are spared.
        """
        self._check_lease()
        marker = paths.condemned(directory)
        if self.dry_run:
            return await self._unused(directory, marker)
        await self._mark(marker)
        if not await self._unused(directory, marker):
            await self.driver.delete_file(marker)
            return False
        await self.driver.delete_file(first)
        if self._local:
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(directory)  # the rest and the marker (Distribution removes directories)
            return True
        for info in [info async for info in _files(self.driver, directory)]:
            if info.path != marker:
                await self.driver.delete_file(info.path)
        await self.driver.delete_file(marker)
        return True

    async def _mark(self, marker: str) -> None:
        """Write a ``condemned`` marker; it needs no fsync (a crash takes the run that wrote it along)."""
        writer = await self.driver.writer(marker)
        await writer.write(str(time.time()).encode())
        await writer.close()

    async def _unused(self, directory: str, marker: str) -> bool:
        """Whether the directory holds objects, none modified since the cut-off (markers aside)."""
        ages = [info.modified async for info in _files(self.driver, directory) if info.path != marker]
        return bool(ages) and max(ages) < self.cutoff

    async def _delete_files(self, files: list[str]) -> None:
        """Delete objects; on local disk their directory goes too (Distribution removes directories)."""
        if self._local:
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(files[0].rpartition("/")[0])
            return
        for path in files:
            await self.driver.delete_file(path)


async def _files(driver: StorageDriver, directory: str) -> AsyncIterator[FileInfo]:
    """The objects directly in ``directory`` (one listing on S3); none when it is gone."""
    try:
        async for info in driver.walk(directory):
            if not info.is_dir and info.path.rpartition("/")[0] == directory:
                yield info
    except PathNotFound:
        return


async def _bounded(items: list[T], work: Callable[[T], Awaitable[None]], limit: int = CONCURRENCY) -> None:
    """Run ``work`` over ``items``, ``limit`` at a time (S3 requests overlap; the filesystem is cheap)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
