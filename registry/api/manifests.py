"""``GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>``."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import registry_of, repository_of
from registry.api.etags import digest_headers, not_modified
from registry.errors import RegistryError
from registry.http.urls import location
from registry.instance import Registry
from registry.mediatypes import (
    INDEX_TYPES,
    MAX_MANIFEST_SIZE,
    InvalidManifest,
    ParsedManifest,
    detect_media_type,
    parse,
    referrer_descriptor,
)
from registry.names import check_tag, digest_param, is_tag
from registry.repository import Repository
from storage.blobs import BlobUnknown
from storage.digests import Digest, digest_bytes
from storage.manifests import ManifestUnknown, TagUnknown

DEFAULT_PLATFORM = ("linux", "amd64")


async def resolve(registry: Registry, name: str, reference: str) -> Digest:
    """The digest a reference names in storage (the web UI's lookup; the /v2 GET reads the repository)."""
    if is_tag(reference):
        try:
            return await registry.tags.resolve(name, reference)
        except TagUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
    return digest_param(reference)


async def get_manifest(request: Request) -> Response:
    repo = repository_of(request)
    reference = request.path_params["reference"]
    if not is_tag(reference) and ":" not in reference:
        # neither a tag nor a digest, so nothing can be stored under it: the spec's 404 for a missing manifest
        raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference})
    try:
        if is_tag(reference):
            manifest = await repo.manifest_by_tag(reference)
        else:
            manifest = await repo.manifest_by_digest(digest_param(reference))
        digest, content = manifest.digest, manifest.content
        media_type = detect_media_type(content)
        if is_tag(reference) and media_type in INDEX_TYPES and not accepts(request, media_type):
            # a client that cannot read manifest lists gets the default platform's image, as from Distribution
            fallback = await default_platform(repo, content, request)
            if fallback is not None:
                digest, content, media_type = fallback
    except TagUnknown:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
    except ManifestUnknown as e:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(e)}) from None
    headers = {**digest_headers(str(digest)), "Content-Type": media_type}
    if manifest.warning:
        headers["Warning"] = manifest.warning
    if not_modified(request, str(digest)):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(len(content))
    body = b"" if request.method == "HEAD" else content
    return Response(body, headers=headers)


async def load(registry: Registry, name: str, digest: Digest) -> bytes:
    try:
        return await registry.manifests.get(name, digest)
    except ManifestUnknown:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None


def is_digest_reference(reference: str) -> bool:
    """A reference with a colon can only be a digest (tags have none): its errors are DIGEST_INVALID,
    the others' TAG_INVALID."""
    return ":" in reference


def accepts(request: Request, media_type: str) -> bool:
    """False only when the client lists the types it reads and this one is not among them."""
    header = ",".join(request.headers.getlist("accept"))
    listed = {part.split(";", 1)[0].strip().lower() for part in header.split(",") if part.strip()}
    return not listed or media_type in listed or "*/*" in listed


async def default_platform(repo: Repository, content: bytes, request: Request) -> tuple[Digest, bytes, str] | None:
    """The index's linux/amd64 image, if the client reads its type (raises ManifestUnknown)."""
    for child in json.loads(content).get("manifests", []):
        platform = child.get("platform") or {}
        if (platform.get("os"), platform.get("architecture")) == DEFAULT_PLATFORM:
            image = await repo.manifest_by_digest(digest_param(child.get("digest", "")))
            image_type = detect_media_type(image.content)
            if accepts(request, image_type):
                return image.digest, image.content, image_type
    return None


async def put_manifest(request: Request) -> Response:
    registry = registry_of(request)
    name, reference = request.path_params["name"], request.path_params["reference"]
    content = await read_limited(request)
    try:
        manifest = parse(content, request.headers.get("content-type"))
    except InvalidManifest as e:
        raise RegistryError("MANIFEST_INVALID", e.message, detail=e.detail) from None
    if not is_digest_reference(reference):
        digest = digest_bytes(content)
        tags = [check_tag(reference)]
    else:
        claimed = digest_param(reference)
        digest = digest_bytes(content, claimed.algorithm)
        if digest != claimed:
            raise RegistryError("DIGEST_INVALID", detail={"expected": str(claimed), "computed": str(digest)})
        tags = []
    tags += [check_tag(t) for t in request.query_params.getlist("tag") if t not in tags]
    if not registry.config.validation.disabled:
        await verify_references(registry, name, manifest)
    if registry.blobs.ledger is not None:
        await registry.check_quota(name, await uncounted_bytes(registry, name, digest, len(content), manifest))
    await registry.manifests.put(name, digest, content)
    collecting = await registry.gc_running()  # asked after storing: a GC that starts later sees the manifest
    if collecting:
        if not registry.config.validation.disabled:
            await recheck_references(registry, name, digest, manifest)
        await registry.manifests.confirm(name, digest, content)
    for tag in tags:
        await registry.tags.tag(name, tag, digest)
        if collecting:
            await registry.tags.confirm(name, tag, digest)
    headers = {
        "Location": location(request, registry.config.http, f"v2/{name}/manifests/{digest}"),
        "Docker-Content-Digest": str(digest),
    }
    if manifest.subject is not None:
        descriptor = referrer_descriptor(manifest, digest, len(content))
        await registry.referrers.add(name, manifest.subject.digest, digest, descriptor)
        headers["OCI-Subject"] = str(manifest.subject.digest)
    if request.query_params.getlist("tag"):
        headers["OCI-Tag"] = ", ".join(tags)
    return Response(status_code=201, headers=headers)


async def read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
        raise RegistryError("SIZE_INVALID", "manifest too large", status=413,
                            detail={"limit": MAX_MANIFEST_SIZE})
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MANIFEST_SIZE:
            raise RegistryError("SIZE_INVALID", "manifest too large", status=413,
                                detail={"limit": MAX_MANIFEST_SIZE})
        parts.append(chunk)
    return b"".join(parts)


async def verify_references(registry: Registry, name: str, manifest: ParsedManifest) -> None:
    """Every blob and child manifest must be in the repository (foreign layers by URL policy)."""
    for blob in manifest.blobs:
        if blob.urls:
            check_urls(registry, blob.urls)
            continue
        try:
            await registry.blobs.stat_in_repository(name, blob.digest)
        except BlobUnknown:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(blob.digest)}) from None
        await registry.blobs.relied_on(name, blob.digest)  # a GC running now must spare it (docs/gc.md)
    for child in manifest.children:
        if await registry.manifests.exists(name, child.digest):
            await registry.manifests.relied_on(name, child.digest)
            continue
        try:
            await registry.blobs.stat_in_repository(name, child.digest)
        except BlobUnknown:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digest": str(child.digest)}) from None
        await registry.blobs.relied_on(name, child.digest)


async def uncounted_bytes(registry: Registry, name: str, digest: Digest, size: int, manifest: ParsedManifest) -> int:
    """What storing this manifest adds to its namespace's usage (blobs it does not count yet, usually
    only the manifest itself: uploads and mounts count their blobs)."""
    ledger = registry.blobs.ledger
    assert ledger is not None
    adding = 0 if await ledger.counted(name, digest) else size
    for ref in [*manifest.blobs, *manifest.children]:
        if not ref.urls and not await ledger.counted(name, ref.digest):
            adding += ref.size
    return adding


async def recheck_references(registry: Registry, name: str, digest: Digest, manifest: ParsedManifest) -> None:
    """While a GC runs, after the manifest was stored: mark every reference used again, then check that
    each is still there and not being deleted (docs/gc.md).  If one is going, the revision is withdrawn
    and the push refused; the client pushes again and uploads what went."""
    for ref in [*(b for b in manifest.blobs if not b.urls), *manifest.children]:
        if ref in manifest.children and await registry.manifests.exists(name, ref.digest):
            await registry.manifests.relied_on(name, ref.digest)
            usable = await registry.manifests.usable(name, ref.digest)
        else:
            await registry.blobs.relied_on(name, ref.digest)
            usable = await registry.blobs.usable(name, ref.digest)
        if not usable:
            try:
                await registry.manifests.delete(name, digest)
            except ManifestUnknown:
                pass
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", "removed by garbage collection while pushing",
                                detail={"digest": str(ref.digest)})


def check_urls(registry: Registry, urls: tuple[str, ...]) -> None:
    """Foreign layer URLs are http(s) without fragment, match an ``allow`` pattern when some are
    configured (any URL otherwise) and no ``deny`` pattern."""
    allow = registry.config.validation.manifest_urls_allow
    deny = registry.config.validation.manifest_urls_deny
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


async def delete_manifest(request: Request) -> Response:
    registry = registry_of(request)
    await delete_reference(registry, request.path_params["name"], request.path_params["reference"])
    return Response(status_code=202)


async def delete_reference(registry: Registry, name: str, reference: str) -> None:
    """Untag a tag, or delete a manifest by digest with its tags and its referrers-index entry (the API's
    DELETE and the web UI's)."""
    if not registry.config.storage.delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry")
    if not is_digest_reference(reference):
        try:
            await registry.tags.untag(name, check_tag(reference))
        except TagUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
        return
    digest = digest_param(reference)
    content = await load(registry, name, digest)
    for tag in await registry.tags.tags_of(name, digest):
        try:
            await registry.tags.untag(name, tag)
        except TagUnknown:
            pass
    try:
        manifest = parse(content, detect_media_type(content))
    except InvalidManifest:
        manifest = None
    if manifest is not None and manifest.subject is not None:
        await registry.referrers.remove(name, manifest.subject.digest, digest)
    try:
        await registry.manifests.delete(name, digest)
    except ManifestUnknown:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None
