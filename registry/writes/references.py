"""What a pushed manifest names must be there: checked before storing it and, when a GC ran meanwhile,
again in storage after (the push side of docs/gc.md's protocol), and the foreign-layer URL policy."""

from __future__ import annotations

from urllib.parse import urlsplit

from registry.config import ValidationConfig
from registry.errors import RegistryError
from registry.mediatypes import ParsedManifest
from storage import paths
from storage.blobs import BlobStore, BlobUnknown
from storage.blobs import relied_directories as blob_directories
from storage.digests import Digest
from storage.manifests import ManifestStore, ManifestUnknown
from storage.manifests import relied_directories as manifest_directories


async def verify(blobs: BlobStore, manifests: ManifestStore, validation: ValidationConfig, name: str,
                 manifest: ParsedManifest) -> None:
    """Every blob and child manifest must be in the repository (foreign layers by URL policy).  The
    blob-descriptor cache may answer: while no GC runs, what was there stays there (docs/gc.md)."""
    for blob in manifest.blobs:
        if blob.urls:
            check_urls(validation, blob.urls)
            continue
        await linked_blob(blobs, name, blob.digest)
    for child in manifest.children:
        if not await manifests.exists(name, child.digest):
            await linked_blob(blobs, name, child.digest)


async def linked_blob(blobs: BlobStore, name: str, digest: Digest, check: bool = False) -> None:
    try:
        await blobs.stat_in_repository(name, digest, check)
    except BlobUnknown:
        raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(digest)}) from None


def relied_directories(name: str, digest: Digest, manifest: ParsedManifest | None) -> list[str]:
    """What a GC running meanwhile must keep for this push: the revision just stored and everything the
    manifest references (each blob with its link; each child as a revision, or as a linked blob)."""
    found = manifest_directories(name, digest)
    if manifest is None:
        return found
    for ref in manifest.blobs:
        if not ref.urls:
            found += blob_directories(name, ref.digest)
    for child in manifest.children:
        found += manifest_directories(name, child.digest) + [paths.layer_dir(name, child.digest)]
    return found


async def recheck(blobs: BlobStore, manifests: ManifestStore, name: str, digest: Digest, content: bytes,
                  manifest: ParsedManifest | None) -> None:
    """A GC ran while the manifest was stored: check in storage (not in a cache) that every reference is
    still there.  If one went, the revision is withdrawn and the push refused; the client pushes again
    and uploads what went.  The revision itself is stored again if the GC removed it."""
    references = [] if manifest is None else [*(b for b in manifest.blobs if not b.urls), *manifest.children]
    for ref in references:
        if ref in manifest.children and await manifests.stored(name, ref.digest):  # type: ignore[union-attr]
            continue
        try:
            await blobs.stat_in_repository(name, ref.digest, check=True)
        except BlobUnknown:
            try:
                await manifests.delete(name, digest)
            except ManifestUnknown:
                pass
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", "removed by garbage collection while pushing",
                                detail={"digest": str(ref.digest)}) from None
    await manifests.restore(name, digest, content)


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
