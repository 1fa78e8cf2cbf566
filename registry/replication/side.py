"""What the copier needs of either side of a copy, this registry (``local``) or a remote one (``remote``),
and the failures it tells apart: one item failed (the others go on), the remote is down (the execution
stops and is retried later), the remote refused our credentials (the execution stops at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from storage.digests import Digest


class ItemFailed(Exception):
    """This item could not be copied (the message is the side's error); the others go on."""


class RemoteDown(ItemFailed):
    """The remote did not answer, or kept answering 5xx, after the request retries."""


class Transient(Exception):
    """No answer, or one worth asking again for (429, 5xx but 507): the same request may work later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """The remote refused our credentials: every further request would be refused too."""


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: Digest
    media_type: str
    content: bytes  # exactly as stored: copied byte for byte, so its digest stays


@dataclass(frozen=True, slots=True)
class BlobStream:
    size: int
    chunks: AsyncIterator[bytes]


class Side(Protocol):
    """One registry as a copy sees it; ``label`` names it in messages (``remote dr``, ``local``)."""

    label: str

    def repositories(self) -> AsyncIterator[str]:
        """Every repository, in lexical order."""
        ...

    async def tags(self, repository: str) -> list[str]:
        """The repository's tags (empty when it does not exist)."""
        ...

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest a tag or digest names; None when there is none."""
        ...

    async def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag or digest names (a HEAD); None when there is none."""
        ...

    async def has_blob(self, repository: str, digest: Digest) -> bool: ...

    def open_blob(self, repository: str, digest: Digest) -> AbstractAsyncContextManager[BlobStream]:
        """The blob's bytes, streamed (raises ItemFailed when it is missing)."""
        ...

    async def mount_blob(self, repository: str, digest: Digest, source: str | None) -> bool:
        """Link a blob this side holds in ``source`` (None: wherever it may hold it) into ``repository``;
        False when it could not."""
        ...

    async def write_blob(self, repository: str, digest: Digest, size: int, chunks: AsyncIterator[bytes]) -> None:
        """Store a blob, verified against ``digest``."""
        ...

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        """Store a manifest under a tag or its digest; True when this side indexes its ``subject`` itself
        (the referrers API), False when the referrers tag schema must be kept up by the copier."""
        ...

    async def delete(self, repository: str, reference: str) -> bool:
        """Delete a tag (the manifest stays) or a manifest by digest; False when it was not there."""
        ...

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``."""
        ...
