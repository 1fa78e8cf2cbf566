"""``RepositoryWriter``: every change to a repository goes through here, whoever asks (the /v2 handlers, the
web UI, the mirror filling its cache, replication), as Distribution's ``ManifestService.Put``,
``TagService`` and ``BlobWriter.Commit`` sit under its thin handlers.

It owns what a write must pass: validation (media types, the references a manifest names, the
foreign-layer URL policy), the registry's shape (read-only mode, mirrored repositories), the policies
(``registry/writes/policy.py``: deletes disabled, the caller's grant, tag rules and what other parts add),
quotas, the push side of the GC protocol (docs/gc.md: mark what a push relies on, and while a GC holds
its lease check again after storing and confirm what was written), the referrers index; and it
publishes one event per change (``registry/writes/events.py``).

Why a writer beside ``Repository`` rather than write methods on it: the read path is per request and
per kind of repository (a mirrored one reads through its upstream), while writes are one road for every
repository with its own dependencies (policies, quotas, the GC lease, the event bus).  A mirrored
repository refuses clients' writes but its cache is filled through this same road (the ``mirror``
actor), and callers without a read-side object (replication, the web UI) write through it alike.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from registry import offload
from registry.config import Config
from registry.errors import RegistryError
from registry.mediatypes import (
    InvalidManifest,
    ParsedManifest,
    detect_media_type,
    parse,
    parse_stored,
    referrer_descriptor,
)
from registry.names import check_name, check_tag, digest_param
from registry.writes import references
from registry.writes.actor import MIRROR, Actor
from registry.writes.events import EventBus, EventKind, RepositoryEvent
from registry.writes.policy import Write, WritePolicy, no_current
from registry.writes.quota import QuotaGuard
from storage import paths
from storage.blobs import BlobStore, BlobUnknown
from storage.digests import Digest, digest_bytes
from storage.manifests import ManifestStore, ManifestUnknown, TagStore, TagUnknown
from storage.manifests import relied_directories as manifest_directories
from storage.purge import purge_uploads
from storage.referrers import ReferrersIndex
from storage.uploads import UploadInfo, UploadStore, UploadUnknown

Refusal = Callable[[str], RegistryError | None]


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: Digest
    tags: tuple[str, ...]
    subject: Digest | None  # the manifest's ``subject``: it is in the subject's referrers now


@dataclass(slots=True)
class RepositoryWriter:
    """The one road for changes (see the module's docstring); ``registry.writer`` of the ``Registry``."""

    config: Config
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    tags: TagStore
    referrers: ReferrersIndex
    events: EventBus
    policies: list[WritePolicy]  # consulted in order on every write; other parts append theirs
    quota: QuotaGuard | None = None
    mirrored: Refusal | None = None  # why a name refuses clients' writes (a mirrored prefix)

    # --- what every write passes --------------------------------------------------------------------

    def check_writable(self, name: str, actor: Actor | None = None) -> None:
        """Raise the spec's error when ``name`` refuses writes: read-only mode, or a mirrored repository
        (except to the mirror filling it).  HTTP asks this before reading a request's body."""
        if actor is not None and actor.kind == MIRROR:
            return
        if self.config.storage.readonly:
            raise RegistryError("UNSUPPORTED", "the registry is in read-only mode")
        refusal = self.mirrored(name) if self.mirrored is not None else None
        if refusal is not None:
            raise refusal

    async def admit(self, change: RepositoryEvent, current: Callable[[], Awaitable[Digest | None]] = no_current
                    ) -> None:
        """Ask whether ``change`` may be made (see policy.py); ``current``: what its tag points at now."""
        self.check_writable(change.repository, change.actor)
        write = Write(change, current)
        for policy in self.policies:
            await policy.check(write)

    def validating(self, actor: Actor) -> bool:
        """Whether references are checked: not with ``validation.disabled``, nor for the mirror's cache
        (an upstream's manifest is vouched for by its digest; its blobs come when pulled)."""
        return actor.kind != MIRROR and not self.config.validation.disabled

    @staticmethod
    def deciding(actor: Actor) -> bool:
        """Whether quotas may refuse this actor's writes (a mirror's cache is counted, never refused)."""
        return actor.kind != MIRROR

    def counting(self, name: str, blobs: list[tuple[Digest, int]], actor: Actor,
                 upload: UploadInfo | None = None) -> contextlib.AbstractAsyncContextManager[None]:
        """Around linking ``blobs``: the quota's reservation (see quota.py), when there are quotas."""
        if self.quota is None:
            return contextlib.nullcontext()
        return self.quota.counting(name, blobs, upload, check=self.deciding(actor))

    async def tag_target(self, name: str, tag: str) -> Digest | None:
        try:
            return await self.tags.resolve(name, tag)
        except TagUnknown:
            return None

    # --- manifests and tags --------------------------------------------------------------------------

    async def put_manifest(self, name: str, reference: str, content: bytes, media_type: str | None, actor: Actor,
                           extra_tags: Sequence[str] = ()) -> PushedManifest:
        """Store a manifest under a tag or its digest (``reference``), plus ``extra_tags`` (OCI's ``?tag=``)."""
        manifest: ParsedManifest | None = None
        if actor.kind == MIRROR:
            media_type = await offload.sized(len(content), detect_media_type, content)
        else:
            try:
                manifest = await offload.sized(len(content), parse, content, media_type)
            except InvalidManifest as e:
                raise RegistryError("MANIFEST_INVALID", e.message, detail=e.detail) from None
            media_type = manifest.media_type
        if ":" not in reference:  # tags have no colon: anything with one is a digest
            digest = digest_bytes(content)
            tags = [check_tag(reference)]
        else:
            claimed = digest_param(reference)
            digest = digest_bytes(content, claimed.algorithm)
            if digest != claimed:
                raise RegistryError("DIGEST_INVALID", detail={"expected": str(claimed), "computed": str(digest)})
            tags = []
        tags += [check_tag(t) for t in extra_tags if t not in tags]
        await self.admit(RepositoryEvent(EventKind.MANIFEST_PUSHED, name, actor, digest, tuple(tags)))
        for tag in tags:
            await self.admit(RepositoryEvent(EventKind.TAG_SET, name, actor, digest, (tag,)),
                             functools.partial(self.tag_target, name, tag))
        verified = manifest if self.validating(actor) else None  # whose references are checked
        gc = self.blobs.guard  # the push side of docs/gc.md
        before = await self.blobs.watch.view()  # taken before the references are checked
        if verified is not None:
            await references.verify(self.blobs, self.manifests, self.config.validation, name, verified)
        # the manifest counts, and what it names that the namespace does not count yet
        named = [(r.digest, r.size) for r in [*verified.blobs, *verified.children] if not r.urls] \
            if verified is not None else []
        async with self.counting(name, [(digest, len(content)), *named], actor):
            await self.manifests.put(name, digest, content)
            await gc.settle(before, references.relied_directories(name, digest, verified),
                            lambda: references.recheck(self.blobs, self.manifests, name, digest, content, verified))
        for tag in tags:
            await self.tags.tag(name, tag, digest)
        if tags:
            await gc.settle(before, [paths.tag_dir(name, tag) for tag in tags],
                            lambda: self.restore_tags(name, tags, digest))
        subject = manifest.subject if manifest is not None else None
        if manifest is not None and subject is not None:
            descriptor = referrer_descriptor(manifest, digest, len(content))
            await self.referrers.add(name, subject.digest, digest, descriptor)
        await self.events.publish(RepositoryEvent(EventKind.MANIFEST_PUSHED, name, actor, digest, tuple(tags),
                                                  media_type, len(content)))
        return PushedManifest(digest, tuple(tags), subject.digest if subject is not None else None)

    async def tag(self, name: str, tag: str, digest: Digest, actor: Actor) -> None:
        """Point ``tag`` at a manifest the repository holds (raises MANIFEST_UNKNOWN otherwise)."""
        check_tag(tag)
        await self.admit(RepositoryEvent(EventKind.TAG_SET, name, actor, digest, (tag,)),
                         functools.partial(self.tag_target, name, tag))
        before = await self.blobs.watch.view()  # taken before the manifest is checked (docs/gc.md)
        try:
            content = await self.manifests.get(name, digest)
        except ManifestUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None
        await self.tags.tag(name, tag, digest)

        async def still_there() -> None:
            if not await self.manifests.stored(name, digest):
                with contextlib.suppress(TagUnknown):
                    await self.tags.untag(name, tag)
                raise RegistryError("MANIFEST_UNKNOWN", "removed by garbage collection while tagging",
                                    detail={"digest": str(digest)})
            await self.tags.restore(name, tag, digest)

        await self.blobs.guard.settle(before, [*manifest_directories(name, digest), paths.tag_dir(name, tag)],
                                      still_there)
        media_type = await offload.sized(len(content), detect_media_type, content)
        await self.events.publish(RepositoryEvent(EventKind.TAG_SET, name, actor, digest, (tag,), media_type,
                                                  len(content)))

    async def delete(self, name: str, reference: str, actor: Actor) -> None:
        """Untag a tag, or delete a manifest by digest with its tags and its referrers-index entry."""
        if ":" not in reference:
            tag = check_tag(reference)
            await self.admit(RepositoryEvent(EventKind.TAG_DELETED, name, actor, tags=(tag,)),
                             functools.partial(self.tag_target, name, tag))
            try:
                await self.tags.untag(name, tag)
            except TagUnknown:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": tag}) from None
            await self.events.publish(RepositoryEvent(EventKind.TAG_DELETED, name, actor, tags=(tag,)))
            return
        digest = digest_param(reference)
        await self.admit(RepositoryEvent(EventKind.MANIFEST_DELETED, name, actor, digest))
        try:
            content = await self.manifests.get(name, digest)
        except ManifestUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None
        tags = await self.tags.tags_of(name, digest)
        for tag in tags:
            await self.admit(RepositoryEvent(EventKind.TAG_DELETED, name, actor, digest, (tag,)),
                             functools.partial(self.tag_target, name, tag))
        for tag in tags:
            with contextlib.suppress(TagUnknown):
                await self.tags.untag(name, tag)
        try:
            subject = (await offload.sized(len(content), parse_stored, content)).subject
        except InvalidManifest:
            subject = None
        if subject is not None:
            await self.referrers.remove(name, subject.digest, digest)
        try:
            await self.manifests.delete(name, digest)
        except ManifestUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None
        if self.quota is not None:
            await self.quota.uncount(name, digest)
        await self.events.publish(RepositoryEvent(EventKind.MANIFEST_DELETED, name, actor, digest, tuple(tags)))

    async def restore_tags(self, name: str, tags: Sequence[str], digest: Digest) -> None:
        """A GC ran while the tags were written: those that retention removed meanwhile are written again."""
        for tag in tags:
            await self.tags.restore(name, tag, digest)

    # --- blobs and uploads ---------------------------------------------------------------------------

    async def relied_on(self, name: str, digest: Digest) -> None:
        """A client found the blob in ``name`` ("layer already exists"): its push will rely on it, so a GC
        running now must spare it (docs/gc.md)."""
        await self.blobs.relied_on(name, digest)

    async def start_upload(self, name: str, algorithm: str, actor: Actor, declared: int = 0) -> UploadInfo:
        """A new upload session; ``declared``: the bytes the client announced it sends with it (they count
        against the quota before any is received; refused, the session goes)."""
        await self.admit(RepositoryEvent(EventKind.BLOB_PUSHED, name, actor))
        upload = await self.uploads.create(name, algorithm)
        if self.quota is not None and declared > 0 and self.deciding(actor):
            try:
                await self.quota.hold(upload, declared)
            except RegistryError:
                await self.cancel_upload(name, upload.id, actor)
                raise
        return upload

    async def append_upload(self, upload: UploadInfo, chunks: AsyncIterator[bytes], start: int | None,
                            length: int | None, declared: int, actor: Actor) -> None:
        """Append a chunk; its bytes count as the session's from the start: ``length`` from Content-Range,
        else ``declared`` from Content-Length (refused when over the quota before anything is stored); a
        streamed chunk counts for what arrived."""
        await self.admit(RepositoryEvent(EventKind.BLOB_PUSHED, upload.name, actor))
        if self.quota is None or not self.deciding(actor):
            async with self.uploads.lock(upload.name, upload.id):
                await self.uploads.append(upload, chunks, start, length)
            return
        reserved = upload.size + (length if length is not None else declared)
        entry = await self.quota.hold(upload, reserved)
        try:
            async with self.uploads.lock(upload.name, upload.id):
                await self.uploads.append(upload, chunks, start, length)
        finally:
            await self.quota.account(upload, entry, reserved)

    async def commit_upload(self, upload: UploadInfo, digest: Digest, chunks: AsyncIterator[bytes] | None,
                            actor: Actor, declared: int = 0) -> int:
        """Receive the last chunk (``declared`` bytes), verify the digest and link the blob into the
        repository once the quota allows; its size.  A refused completion removes its session, as
        Distribution's does (the client uploads again once there is room)."""
        await self.admit(RepositoryEvent(EventKind.BLOB_PUSHED, upload.name, actor, digest))
        quota, deciding = self.quota, self.deciding(actor)
        held: tuple[str, int] | None = None  # the session's entry for the last chunk, and its size
        try:
            if quota is not None and deciding and declared > 0:
                held = (await quota.hold(upload, upload.size + declared), upload.size + declared)
            async with self.uploads.lock(upload.name, upload.id):
                size = await self.uploads.finish(upload, digest, chunks)
        except RegistryError:
            with contextlib.suppress(UploadUnknown):
                await self.cancel_upload(upload.name, upload.id, actor)
            raise
        except BaseException:
            if quota is not None:  # the session stays (a digest mismatch keeps it resumable): what it holds counts
                await quota.account(upload, *(held or (None, None)))
            raise
        try:  # the blob is stored under its digest and the session is gone: link it if the quota allows
            async with self.counting(upload.name, [(digest, size)], actor, upload):
                await self.blobs.link(upload.name, digest)
        finally:
            if quota is not None:
                await quota.release(upload.name, upload.id)
        await self.events.publish(RepositoryEvent(EventKind.BLOB_PUSHED, upload.name, actor, digest, size=size))
        return size

    async def push_blob(self, name: str, digest: Digest, chunks: AsyncIterator[bytes] | None, actor: Actor,
                        declared: int = 0) -> int:
        """A whole blob in one go (a monolithic upload): nothing stays behind when it fails."""
        upload = await self.start_upload(name, digest.algorithm, actor, declared)
        try:
            return await self.commit_upload(upload, digest, chunks, actor)
        except BaseException:
            # the client never learnt of this session: nothing may stay behind (a retry starts anew)
            with contextlib.suppress(UploadUnknown):
                await self.cancel_upload(upload.name, upload.id, actor)
            raise

    async def cancel_upload(self, name: str, upload_id: str, actor: Actor) -> None:
        """Raises UploadUnknown."""
        self.check_writable(name, actor)
        try:
            await self.uploads.cancel(name, upload_id)
        finally:
            if self.quota is not None:
                await self.quota.release(name, upload_id)

    async def purge_uploads(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Remove upload sessions abandoned ``older_than`` seconds ago (Distribution's upload purging)."""
        quota = self.quota
        return await purge_uploads(self.blobs.driver, older_than, dry_run,
                                   on_purged=quota.release if quota is not None else None)

    async def mount(self, name: str, digest: Digest, source: str | None, actor: Actor) -> bool:
        """Link a blob of ``source`` (of any repository when None: the caller decides who may) into
        ``name``; False when there is no such blob there (the client uploads it instead)."""
        try:  # the data is checked in storage: a mount lets the client skip its upload
            if source is not None:
                check_name(source)
                size = await self.blobs.stat_in_repository(source, digest, check=True)
            else:
                size = await self.blobs.stat(digest, check=True)
        except (BlobUnknown, RegistryError):
            return False
        await self.admit(RepositoryEvent(EventKind.BLOB_MOUNTED, name, actor, digest, from_repository=source))
        async with self.counting(name, [(digest, size)], actor):
            await self.blobs.link(name, digest)
            await self.blobs.relied_on(name, digest)  # a GC running now spares it (docs/gc.md)
        await self.events.publish(RepositoryEvent(EventKind.BLOB_MOUNTED, name, actor, digest, size=size,
                                                  from_repository=source))
        return True

    async def delete_blob(self, name: str, digest: Digest, actor: Actor) -> None:
        """Unlink a blob from the repository (GC frees its bytes when nothing else links it)."""
        await self.admit(RepositoryEvent(EventKind.BLOB_DELETED, name, actor, digest))
        try:
            await self.blobs.unlink(name, digest)
        except BlobUnknown:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
        if self.quota is not None:
            await self.quota.uncount(name, digest)
        await self.events.publish(RepositoryEvent(EventKind.BLOB_DELETED, name, actor, digest))
