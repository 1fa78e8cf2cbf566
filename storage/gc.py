"""Online mark-and-sweep garbage collection; docs/gc.md explains why a push running meanwhile is safe.

Mark, per repository: the tagged manifests (every manifest unless ``delete_untagged``), everything
they reference (config, layers, index children, recursively) and the manifests whose ``subject`` is
kept (signatures and SBOMs live as long as their image).  Sweep: the untagged manifests nothing kept
needs (with ``delete_untagged``), the ``_layers`` links nothing kept in the repository references and
the blobs nothing kept anywhere references.  Nothing stored since the cut-off (the start of the run
minus the grace window) is removed, and deletions go in batches through ``storage.sweep``, which spares
what pushes running meanwhile rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from storage import metrics, paths
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import PathNotFound, StorageDriver, StorageError
from storage.gc_watch import GC_NOTICE, LEASE_NAME
from storage.lease import Lease, LeaseLost
from storage.sweep import Doomed, Sweeper
from storage.tree import RepositoryTree
from storage.usage import UsageLedger, namespace_of

log = logging.getLogger("moorage.gc")
T = TypeVar("T")
CONCURRENCY = 16
REFERENCES_CACHED = 8192  # manifests whose references a run keeps
BATCH = 1000  # objects deleted per handshake (storage.sweep); S3 deletes a batch's keys in 1-3 requests
# A collector that dies holds up the next one, and pushes that rely on its last batch, this long
# (storage.sweep.WAIT is longer); renewed every third of it.
LEASE_TTL = 30.0
RELEASE_WAIT = 10.0  # seconds a run gives the release of its lease
# S3 keeps modification times in whole seconds, filesystems in coarse clock ticks: an object used
# just after the run started may carry a time slightly before it
CLOCK_SLACK = 1.0


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


async def read_repository(tree: RepositoryTree, name: str, tags: bool = True) -> RepositoryFiles:
    """``tags``: read them too (needed only to tell untagged manifests, or to expire tags)."""
    repo = RepositoryFiles(name, revisions=set(await tree.revisions(name)), layers=set(await tree.layers(name)))
    for tag in await tree.tags(name) if tags else ():
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
    bytes_kept: int | None = 0  # None: not read (blobs GC keeps are not looked at on local disk)
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
            f"{verb}; blobs: {self.blobs_kept} kept"
            + (f" ({human_size(self.bytes_kept)})" if self.bytes_kept is not None else "")
            + f", {self.blobs_removed} {verb} "
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
                 expire: TagExpiry | None = None, ledger: UsageLedger | None = None,
                 notice: float = GC_NOTICE) -> None:
        """``expire`` names tags to remove first (retention); the manifests they named are collected in
        the same run unless something still needs them.  ``notice``: how long after taking the lease the
        mark may begin (``storage.gc_watch``: every replica has seen the lease by then)."""
        self.driver = driver
        self.expire = expire
        self.ledger = ledger  # reconciled with what the run leaves linked (quotas)
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.grace = grace
        self.notice = notice
        self.progress = progress or NoProgress()
        self.lease = lease if lease is not None else Lease(driver, LEASE_NAME, ttl=LEASE_TTL)
        self.cutoff = 0.0
        self._lost: LeaseLost | None = None
        # what manifests reference, read once per run where it can (a manifest mounted into many
        # repositories); bounded, as the run's memory must be (docs/gc.md: peak RSS)
        self._refs: OrderedDict[Digest, References | None] = OrderedDict()
        self._marked: set[Digest] = set()
        self._tree = RepositoryTree(driver)
        self._sweeper = Sweeper(driver, self.lease.token, self._check_lease)

    async def run(self) -> GCResult:
        """One collection under the lease; raises GCBusy when another process runs one."""
        started = time.time()  # before the lease settles: the cut-off must precede the mark
        if not await self.lease.acquire():
            holder = await self.lease.current()
            raise GCBusy(f"another garbage collection holds the lease ({(holder or {}).get('holder', '?')})")
        noticed = time.monotonic() + self.notice
        renewing = asyncio.create_task(self._renew())
        mode = "retention" if self.expire is not None else "gc"
        try:
            result = await self._collect(started, noticed)
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
        """Stop before deleting anything more once the lease may not be ours: lost to another process, or
        not renewed for so long that readers may find it expired (a process that was paused)."""
        if self._lost is not None:
            raise self._lost
        if self.lease.valid_for() < self.lease.ttl / 4:
            raise LeaseLost(f"the GC lease was not renewed for {self.lease.ttl - self.lease.valid_for():.0f}s")

    async def _collect(self, started: float, noticed: float) -> GCResult:
        self.cutoff = started - self.grace - CLOCK_SLACK
        result = GCResult(dry_run=self.dry_run)
        # every replica sees the lease before the walk begins: a push that did not see it stored its
        # manifest (and created its repository) before the repositories are listed, so the mark keeps it
        await asyncio.sleep(noticed - time.monotonic())
        self._check_lease()
        self.progress.phase("list repositories", None)
        names = await repository_names(self._tree)
        result.repositories = len(names)
        self.progress.advance(len(names))

        self.progress.phase("mark", len(names))
        doomed: list[tuple[RepositoryFiles, Digest]] = []
        stale_links: list[tuple[str, Digest]] = []

        async def mark(name: str) -> None:
            # without delete_untagged every revision is kept: the tags change nothing
            repo = await read_repository(self._tree, name, self.delete_untagged or self.expire is not None)
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
        revisions = {paths.revision_dir(repo.name, digest): (repo.name, digest) for repo, digest in doomed}
        for removed in await self._sweep(await self._manifest_groups(doomed)):
            result.manifests_removed += 1
            name, digest = revisions[removed.directory]
            result.linked.get(name, set()).discard(digest)
        result.manifests_kept += len(revisions) - result.manifests_removed

        links: dict[str, tuple[str, Digest]] = {}

        async def old_link(item: tuple[str, Digest]) -> None:
            if await self._modified(paths.layer_link(*item)) < self.cutoff:  # else: linked by a push in flight
                links[paths.layer_dir(*item)] = item

        await _bounded(stale_links, old_link)
        self.progress.phase("sweep layer links", len(links))
        for removed in await self._sweep({d: _doomed(d, _files(d, paths.LINK)) for d in links}):
            result.links_removed += 1
            name, digest = links[removed.directory]
            result.linked.get(name, set()).discard(digest)

        self.progress.phase("scan blobs", None)
        candidates: dict[str, Doomed] = {}
        sizes: dict[str, tuple[Digest | None, int]] = {}
        legacy: list[str] = []  # "condemned" markers an earlier version's run left beside kept blobs
        # the sizes of kept blobs only for a ledger (quotas); otherwise they are not even read on local disk
        skip = self._marked.__contains__ if self.ledger is None else None
        scanned = 0
        async for digest, size, last_used, files in self._tree.blob_files(skip=skip):
            scanned += 1
            if size < 0:  # marked, and not read (local disk): kept, its size unknown
                result.blobs_kept += 1
                result.bytes_kept = None
            elif digest is None or (digest not in self._marked and last_used < self.cutoff):
                directory = files[0].rpartition("/")[0]
                candidates[directory] = Doomed(directory, ((directory, tuple(files)),))
                sizes[directory] = (digest, size)
            else:  # referenced, or unreferenced but stored recently: a push in flight
                result.blobs_kept += 1
                if result.bytes_kept is not None:
                    result.bytes_kept += size
                self._size(result, digest, size)
                legacy += [f for f in files if f.endswith("/condemned")]
            self.progress.advance()
            if scanned % 1000 == 0:
                await asyncio.sleep(0)  # local files do not suspend: let the lease renewal run
        self._check_lease()
        if not self.dry_run:
            for marker in legacy:
                await self.driver.delete_file(marker)

        self.progress.phase("sweep blobs", len(candidates))
        gone = {d.directory for d in await self._sweep(candidates)}
        for directory, (digest, size) in sizes.items():
            if digest is None:
                continue  # a directory without data (an earlier run stopped half-way)
            if directory in gone:
                result.blobs_removed += 1
                result.bytes_freed += size
            else:
                result.blobs_kept += 1
                if result.bytes_kept is not None:
                    result.bytes_kept += size
                self._size(result, digest, size)
        if not self.dry_run:
            await self._sweeper.finish()
        if self.ledger is not None and not self.dry_run:
            self.progress.phase("reconcile usage", None)
            await self.ledger.reconcile(result.namespaces(), started)
        result.seconds = time.time() - started
        return result

    async def _sweep(self, items: dict[str, Doomed]) -> list[Doomed]:
        """Delete ``items`` (keyed by directory) in batches through the handshake; what went (a dry run
        deletes nothing and reports everything)."""
        doomed = list(items.values())
        if self.dry_run:
            self.progress.advance(len(doomed))
            return doomed
        removed: list[Doomed] = []
        for start in range(0, len(doomed), BATCH):
            self._check_lease()
            batch = doomed[start : start + BATCH]
            removed += await self._sweeper.remove(batch)
            self.progress.advance(len(batch))
        return removed

    def _size(self, result: GCResult, digest: Digest | None, size: int) -> None:
        if self.ledger is not None and digest is not None:
            result.sizes[digest] = size

    # --- mark ----------------------------------------------------------------------------------------

    async def _references(self, digest: Digest) -> References | None:
        if digest in self._refs:
            self._refs.move_to_end(digest)
            return self._refs[digest]
        try:
            content = await self.driver.get_content(paths.blob_data(digest))
        except PathNotFound:
            content = b""
        found = self._refs[digest] = references(content)
        if len(self._refs) > REFERENCES_CACHED:
            self._refs.popitem(last=False)
        return found

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

    async def _manifest_groups(self, doomed: list[tuple[RepositoryFiles, Digest]]) -> dict[str, Doomed]:
        """Per untagged revision to remove: its directory, its tag-history entries and its referrers
        entry.  One listing per tag of each repository concerned finds the history entries."""
        groups: dict[str, Doomed] = {}
        by_repo: dict[str, tuple[RepositoryFiles, list[Digest]]] = {}
        for repo, digest in doomed:
            by_repo.setdefault(repo.name, (repo, []))[1].append(digest)
        for repo, digests in by_repo.values():
            history: dict[Digest, list[str]] = {}
            for tag in repo.tags:
                for entry in await self._tree.tag_index(repo.name, tag):
                    history.setdefault(entry, []).append(tag)
            for digest in digests:
                directory = paths.revision_dir(repo.name, digest)
                parts = [(directory, _files(directory, paths.LINK))]
                parts += [(paths.tag_index_link(repo.name, tag, digest).rpartition("/")[0],
                           (paths.tag_index_link(repo.name, tag, digest),)) for tag in history.get(digest, ())]
                refs = await self._references(digest)
                if refs is not None and refs.subject is not None:
                    descriptor = paths.referrer_descriptor(repo.name, refs.subject, digest)
                    parts.append((descriptor.rpartition("/")[0], (descriptor,)))
                groups[directory] = Doomed(directory, tuple(parts))
        return groups

    async def _remove_tag(self, name: str, tag: str) -> bool:
        """Remove an expired tag (a batch of one: a push writing it again meanwhile keeps it)."""
        self._check_lease()
        directory = paths.tag_dir(name, tag)
        return bool(await self._sweeper.remove([Doomed(directory, ((directory, None),))]))

    async def _modified(self, path: str) -> float:
        try:
            return (await self.driver.stat_file(path)).modified
        except PathNotFound:
            return 0.0


def _files(directory: str, name: str) -> tuple[str, ...]:
    """The object ``name`` of a link or blob directory, and what earlier versions' GC left beside it."""
    return (f"{directory}/{name}", *paths.legacy_markers(directory))


def _doomed(directory: str, files: tuple[str, ...]) -> Doomed:
    return Doomed(directory, ((directory, files),))


async def _bounded(items: list[T], work: Callable[[T], Awaitable[None]], limit: int = CONCURRENCY) -> None:
    """Run ``work`` over ``items``, ``limit`` at a time (S3 requests overlap; the filesystem is cheap)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)
            await asyncio.sleep(0)  # on local files nothing suspends: let the lease renewal run

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
