"""What a pushed manifest names must be there: checked before storing it and, while a GC runs, again after
(the push side of docs/gc.md's protocol), and the foreign-layer URL policy."""

from __future__ import annotations

from urllib.parse import urlsplit

from registry.config import ValidationConfig
from registry.errors import RegistryError
from registry.mediatypes import ParsedManifest
from storage.blobs import BlobStore, BlobUnknown
from storage.digests import Digest
from storage.manifests import ManifestStore, ManifestUnknown


async def verify(blobs: BlobStore, manifests: ManifestStore, validation: ValidationConfig, name: str,
                 manifest: ParsedManifest) -> None:
    """Every blob and child manifest must be in the repository (foreign layers by URL policy); each is
    marked as relied on, so that a GC running now spares it."""
    for blob in manifest.blobs:
        if blob.urls:
            check_urls(validation, blob.urls)
            continue
        await linked_blob(blobs, name, blob.digest)
    for child in manifest.children:
        if await manifests.exists(name, child.digest):
            await manifests.relied_on(name, child.digest)
        else:
            await linked_blob(blobs, name, child.digest)


async def linked_blob(blobs: BlobStore, name: str, digest: Digest) -> None:
    try:
        await blobs.stat_in_repository(name, digest)
    except BlobUnknown:
        raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
    await blobs.relied_on(name, digest)


async def recheck(blobs: BlobStore, manifests: ManifestStore, name: str, digest: Digest,
                  manifest: ParsedManifest) -> None:
    """While a GC runs, after the manifest was stored: mark every reference used again, then check that
    each is still there and not being deleted (docs/gc.md).  If one is going, the revision is withdrawn
    and the push refused; the client pushes again and uploads what went."""
    for ref in [*(b for b in manifest.blobs if not b.urls), *manifest.children]:
        if ref in manifest.children and await manifests.exists(name, ref.digest):
            await manifests.relied_on(name, ref.digest)
            usable = await manifests.usable(name, ref.digest)
        else:
            await blobs.relied_on(name, ref.digest)
            usable = await blobs.usable(name, ref.digest)
        if not usable:
            try:
                await manifests.delete(name, digest)
            except ManifestUnknown:
                pass
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", "removed by garbage collection while pushing",
                                detail={"digest": str(ref.digest)})


def check_urls(validation: ValidationConfig, urls: tuple[str, ...]) -> None:
    """Foreign layer URLs are http(s) without fragment, match an ``allow`` pattern when some are
    configured (any URL otherwise) and no ``deny`` pattern."""
    allow = validation.manifest_urls_allow
    deny = validation.manifest_urls_deny
    for url in urls:
        parsed = urlsplit(url)
        ok = (
            parsed.scheme in ("http", "https") and bool(parsed.netloc) and not parsed.fragment
            and (allow is None or any(p.search(url) for p in allow))
            and not any(p.search(url) for p in deny)
        )
        if not ok:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", "layer URL not allowed by validation.manifests.urls",
                                detail={"url": url})
