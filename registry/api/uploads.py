"""Blob uploads: POST (start, monolithic, mount), PATCH (chunk or stream), PUT (finish), GET, DELETE."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import registry_of
from registry.errors import RegistryError
from registry.http.ranges import parse_content_range, upload_range
from registry.http.urls import location
from registry.names import check_name, digest_param
from storage.blobs import BlobUnknown
from storage.digests import HASHERS, Digest
from storage.uploads import DigestMismatch, OffsetMismatch, SizeMismatch, UploadInfo, UploadUnknown

CHUNK_MIN_LENGTH = "0"


async def start_upload(request: Request) -> Response:
    registry = registry_of(request)
    name = request.path_params["name"]
    mount = request.query_params.get("mount")
    if mount:
        mounted = await try_mount(request, name, digest_param(mount))
        if mounted is not None:
            return mounted
    digest_text = request.query_params.get("digest")
    algorithm = request.query_params.get("digest-algorithm", "sha256")
    if algorithm not in HASHERS:
        raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm!r}")
    if digest_text:
        digest = digest_param(digest_text)
        await registry.check_quota(name, declared_length(request))
        upload = await registry.uploads.create(name, digest.algorithm)
        try:
            return await finish(request, upload, digest, body(request))
        except BaseException:
            # the client never learnt of this session: nothing may stay behind (a retry starts anew)
            with contextlib.suppress(UploadUnknown):
                await registry.uploads.cancel(upload.name, upload.id)
            raise
    upload = await registry.uploads.create(name, algorithm)
    return Response(status_code=202, headers=upload_headers(request, upload))


async def try_mount(request: Request, name: str, digest: Digest) -> Response | None:
    """Link an existing blob instead of uploading it; None when it cannot (then a normal upload starts).

    Without ``from`` any blob in the registry qualifies, but only for a caller who may read everything
    (auth off, or an admin): otherwise knowing a digest would grant access to a private layer.
    """
    registry = registry_of(request)
    source = request.query_params.get("from")
    try:
        if source:
            check_name(source)
            await registry.blobs.stat_in_repository(source, digest)
        elif request.scope["moorage.grant"].everything:
            await registry.blobs.stat(digest)
        else:
            return None
    except (BlobUnknown, RegistryError):
        return None
    if registry.blobs.ledger is not None and not await registry.blobs.ledger.counted(name, digest):
        await registry.check_quota(name, (await registry.blobs.stat(digest)).size)
    await registry.blobs.link(name, digest)
    await registry.blobs.touch(digest)  # the push relies on a blob that may be old and unreferenced
    return blob_created(request, name, digest)


async def upload_status(request: Request) -> Response:
    upload = await load(request)
    return Response(status_code=204, headers=upload_headers(request, upload))


async def patch_upload(request: Request) -> Response:
    registry = registry_of(request)
    upload = await load(request)
    start, length = chunk_bounds(request)
    await registry.check_quota(upload.name, upload.size + (length if length is not None else declared_length(request)))
    async with registry.uploads.lock(upload.name, upload.id):
        try:
            await registry.uploads.append(upload, request.stream(), start, length)
        except OffsetMismatch as e:
            upload.size = e.size
            raise RegistryError(
                "RANGE_INVALID", "chunk does not start where the upload ends",
                detail={"offset": e.size}, headers=upload_headers(request, upload),
            ) from None
        except SizeMismatch as e:
            raise RegistryError("SIZE_INVALID", str(e)) from None
    return Response(status_code=202, headers=upload_headers(request, upload))


async def complete_upload(request: Request) -> Response:
    upload = await load(request)
    digest_text = request.query_params.get("digest")
    if not digest_text:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required")
    digest = digest_param(digest_text)
    start, _ = chunk_bounds(request)
    if start is not None and start != upload.size:
        raise RegistryError("RANGE_INVALID", "chunk does not start where the upload ends",
                            headers=upload_headers(request, upload))
    await registry_of(request).check_quota(upload.name, upload.size + declared_length(request))
    return await finish(request, upload, digest, body(request))


async def cancel_upload(request: Request) -> Response:
    registry = registry_of(request)
    upload = await load(request)
    try:
        await registry.uploads.cancel(upload.name, upload.id)
    except UploadUnknown:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN") from None
    return Response(status_code=204)


async def finish(
    request: Request, upload: UploadInfo, digest: Digest, chunks: AsyncIterator[bytes] | None
) -> Response:
    registry = registry_of(request)
    async with registry.uploads.lock(upload.name, upload.id):
        try:
            await registry.uploads.commit(upload, digest, chunks)
        except DigestMismatch as e:
            detail = {"expected": str(digest), "reason": str(e)}
            raise RegistryError("DIGEST_INVALID", detail=detail) from None
    return blob_created(request, upload.name, digest)


async def load(request: Request) -> UploadInfo:
    name, upload_id = request.path_params["name"], request.path_params["upload"]
    try:
        return await registry_of(request).uploads.info(name, upload_id)
    except UploadUnknown:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": request.path_params["upload"]}) from None


def chunk_bounds(request: Request) -> tuple[int | None, int | None]:
    """Start offset and length from Content-Range (absent for streamed PATCHes)."""
    header = request.headers.get("content-range")
    if not header:
        return None, None
    bounds = parse_content_range(header)
    if bounds is None:
        raise RegistryError("RANGE_INVALID", f"malformed Content-Range {header!r}")
    start, end = bounds
    length = end - start + 1
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != length:
        raise RegistryError("SIZE_INVALID", "Content-Length does not match Content-Range")
    return start, length


def declared_length(request: Request) -> int:
    """The body's Content-Length (0 when absent or streamed)."""
    declared = request.headers.get("content-length", "0")
    return int(declared) if declared.isdigit() else 0


def body(request: Request) -> AsyncIterator[bytes] | None:
    """The request body stream, or None when the request carries none."""
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return None
    return request.stream()


def upload_headers(request: Request, upload: UploadInfo) -> dict[str, str]:
    registry = registry_of(request)
    return {
        "Location": location(request, registry.config.http, f"v2/{upload.name}/blobs/uploads/{upload.id}"),
        "Docker-Upload-UUID": upload.id,
        "Range": upload_range(upload.size),
        "OCI-Chunk-Min-Length": CHUNK_MIN_LENGTH,
    }


def blob_created(request: Request, name: str, digest: Digest) -> Response:
    registry = registry_of(request)
    return Response(
        status_code=201,
        headers={
            "Location": location(request, registry.config.http, f"v2/{name}/blobs/{digest}"),
            "Docker-Content-Digest": str(digest),
            },
    )
