"""This registry as a side of a copy.

As a source (push rules) it reads through the read path, ``Registry.repository`` (so a mirrored
namespace serves what its upstream holds).  As a destination (pull rules) it writes through the write
path (``registry.writer``) as the actor ``replication`` named after the rule: what it stores passes what
a client's push passes (validation and references, quotas, the GC protocol, the policies such as
immutable tags, the referrers index), is refused where a push is (read-only mode, a mirrored
namespace), and makes the same events (notifications, the audit trail).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from registry.errors import RegistryError
from registry.instance import Registry
from registry.mediatypes import detect_media_type
from registry.replication.side import BlobStream, ItemFailed, Manifest, Transient
from registry.repository import RepositoryUnknown
from registry.writes.actor import Actor
from storage.blobs import BlobUnknown
from storage.digests import Digest, InvalidDigest, parse_digest
from storage.driver import StorageUnavailable
from storage.manifests import ManifestUnknown, TagUnknown
from storage.tree import RepositoryTree
from storage.uploads import DigestMismatch

T = TypeVar("T")
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
REPLICATION = "replication"  # the actor kind of what replication writes


class LocalSide:
    label = "local"

    def __init__(self, registry: Registry, rule: str) -> None:
        self.registry = registry
        self.tree = RepositoryTree(registry.driver)
        self.actor = Actor(REPLICATION, rule)  # no grant: replication may write what its rule names

    async def guard(self, what: str, operation: Awaitable[T]) -> T:
        """The storage's and the policies' errors as the copier's."""
        try:
            return await operation
        except RegistryError as e:
            raise ItemFailed(f"{what}: {e.code} {e.message}") from None
        except StorageUnavailable as e:
            raise Transient(f"{what}: storage unavailable: {e}", e.retry_after) from None
        except OSError as e:
            if e.errno in FULL:
                raise ItemFailed(f"{what}: no space left on this registry's storage") from None
            raise Transient(f"{what}: storage error: {e}") from None

    # --- reading -----------------------------------------------------------------------------------

    async def repositories(self) -> AsyncIterator[str]:
        async for name in self.tree.repositories():
            yield name

    async def tags(self, repository: str) -> list[str]:
        try:
            page = await self.guard(f"tags of {repository}", self.registry.repository(repository).tag_page(None, None))
        except RepositoryUnknown:
            return []
        return page.tags

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        repo = self.registry.repository(repository)
        try:
            what = f"manifest {repository}:{reference}"
            if ":" in reference:
                found = await self.guard(what, repo.manifest_by_digest(digest(reference)))
            else:
                found = await self.guard(what, repo.manifest_by_tag(reference))
        except (TagUnknown, ManifestUnknown):
            return None
        return Manifest(found.digest, detect_media_type(found.content), found.content)

    async def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        if ":" in reference:
            wanted = digest(reference)
            exists = await self.guard(f"manifest {repository}@{reference}",
                                      self.registry.manifests.exists(repository, wanted))
            return wanted if exists else None
        try:
            return await self.guard(f"tag {repository}:{reference}", self.registry.tags.resolve(repository, reference))
        except TagUnknown:
            return None

    async def has_blob(self, repository: str, digest: Digest) -> bool:
        try:
            await self.guard(f"blob {digest}", self.registry.blobs.stat_in_repository(repository, digest, check=True))
        except BlobUnknown:
            return False
        return True

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: Digest) -> AsyncIterator[BlobStream]:
        what = f"blob {digest} of {repository}"
        try:
            blob = await self.guard(what, self.registry.repository(repository).blob(digest, body=True))
        except BlobUnknown:
            raise ItemFailed(f"{what}: not found") from None
        if blob.stored:
            size = blob.size if blob.size is not None else await self.registry.blobs.stat(digest)
            yield BlobStream(size, self.registry.blobs.reader(digest))
        else:  # a mirrored blob on its way from the upstream
            assert blob.stream is not None and blob.size is not None
            yield BlobStream(blob.size, blob.stream(0, None))

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        return await self.guard(f"referrers of {repository}@{digest}", self.registry.referrers.list(repository, digest))

    # --- writing -----------------------------------------------------------------------------------

    async def mount_blob(self, repository: str, digest: Digest, source: str | None) -> bool:
        """Any blob stored here may be linked (replication reads everything)."""
        return await self.guard(f"link of {digest} into {repository}",
                                self.registry.writer.mount(repository, digest, source, self.actor))

    async def write_blob(self, repository: str, digest: Digest, size: int, chunks: AsyncIterator[bytes]) -> None:
        what = f"upload of {digest} to {repository}"
        try:
            await self.guard(what, self.registry.writer.push_blob(repository, digest, chunks, self.actor, size))
        except DigestMismatch as e:
            raise ItemFailed(f"{what}: the source sent other bytes ({e})") from None

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        await self.guard(f"manifest {repository}:{reference}", self.registry.writer.put_manifest(
            repository, reference, manifest.content, manifest.media_type, self.actor))
        return True

    async def delete(self, repository: str, reference: str) -> bool:
        try:
            await self.registry.writer.delete(repository, reference, self.actor)
        except RegistryError as e:
            if e.code == "MANIFEST_UNKNOWN":
                return False
            raise ItemFailed(f"delete of {repository}:{reference}: {e.code} {e.message}") from None
        return True


def digest(text: str) -> Digest:
    try:
        return parse_digest(text)
    except InvalidDigest as e:
        raise ItemFailed(f"malformed digest {text!r}: {e}") from None
