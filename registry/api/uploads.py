"""Blob uploads: POST (start, monolithic, mount), PATCH (chunk or stream), PUT (finish), GET, DELETE; the
sessions, blobs and links are written by the registry's write path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import actor_of, registry_of
from registry.errors import RegistryError
from registry.http.ranges import parse_content_range, upload_range
from registry.http.urls import location
from registry.names import digest_param
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
        await finish(digest, registry.writer.push_blob(name, digest, body(request), actor_of(request),
                                                        declared_length(request)))
        return blob_created(request, name, digest)
    upload = await registry.writer.start_upload(name, algorithm, actor_of(request))
    return Response(status_code=202, headers=upload_headers(request, upload))


async def try_mount(request: Request, name: str, digest: Digest) -> Response | None:
    """Link an existing blob instead of uploading it; None when it cannot (then a normal upload starts).

    Without ``from`` any blob in the registry qualifies, but only for a caller who may read everything
    (auth off, or an admin): otherwise knowing a digest would grant access to a private layer.
    """
    source = request.query_params.get("from")
    if not source and not request.scope["moorage.grant"].everything:
        return None
    if not await registry_of(request).writer.mount(name, digest, source or None, actor_of(request)):
        return None
    return blob_created(request, name, digest)


async def upload_status(request: Request) -> Response:
    upload = await load(request)
    return Response(status_code=204, headers=upload_headers(request, upload))


async def patch_upload(request: Request) -> Response:
    registry = registry_of(request)
    upload = await load(request)
    start, length = chunk_bounds(request)
    try:
        await registry.writer.append_upload(upload, request.stream(), start, length, declared_length(request),
                                            actor_of(request))
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
    await finish(digest, registry_of(request).writer.commit_upload(upload, digest, body(request), actor_of(request),
                                                                   declared_length(request)))
    return blob_created(request, upload.name, digest)


async def cancel_upload(request: Request) -> Response:
    upload = await load(request)
    try:
        await registry_of(request).writer.cancel_upload(upload.name, upload.id, actor_of(request))
    except UploadUnknown:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN") from None
    return Response(status_code=204)


async def finish(digest: Digest, committing: Awaitable[int]) -> None:
    """The write path's completion of an upload, its digest mismatch as the spec's error."""
    try:
        await committing
    except DigestMismatch as e:
        detail = {"expected": str(digest), "reason": str(e)}
        raise RegistryError("DIGEST_INVALID", detail=detail) from None


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
