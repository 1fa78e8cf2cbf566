"""``GET|HEAD|DELETE /v2/<name>/blobs/<digest>``."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.context import actor_of, publish_pull, registry_of, repository_of
from registry.api.etags import digest_headers, not_modified
from registry.errors import RegistryError
from registry.http.blob_response import BlobResponse, opened
from registry.http.ranges import Unsatisfiable, parse_range
from registry.names import digest_param
from registry.writes.events import EventKind
from storage.blobs import BlobUnknown


async def get_blob(request: Request) -> Response | BlobResponse:
    registry = registry_of(request)
    digest = digest_param(request.path_params["digest"])
    repo = repository_of(request)
    try:
        blob = await repo.blob(digest, body=request.method == "GET")
    except BlobUnknown:
        raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
    if request.method == "HEAD" and blob.stored:
        await registry.writer.relied_on(repo.name, digest)  # "layer already exists": the push will rely on it
    headers = {**digest_headers(str(digest)), "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}
    if not_modified(request, str(digest)):
        return Response(status_code=304, headers=headers)
    if request.method == "GET":
        await publish_pull(request, EventKind.BLOB_PULLED, digest, (), None, blob.size)
    if blob.stored and not registry.config.storage.redirect_disabled:
        url = await registry.blobs.redirect_url(digest, request.method)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=digest_headers(str(digest)))
    start, length, status = byte_range(request, blob.size, headers)
    if length is not None:
        headers["Content-Length"] = str(length)
    headers["Content-Type"] = "application/octet-stream"
    if not blob.stored:  # still arriving from the repository's source: no await before the stream opens
        # opened only when it will be read: an opened stream holds a descriptor until it is consumed
        stream = blob.stream(start, length) if blob.stream is not None and length != 0 else None
        return BlobResponse(status, headers, stream=stream, offset=start, length=length)
    assert length is not None  # a stored blob's size is known
    path = registry.blobs.local_path(digest)
    if path is not None:
        try:
            fd = os.open(path, os.O_RDONLY)  # opened before answering: a concurrent delete cannot break it
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
        return BlobResponse(status, headers, fd=fd, offset=start, length=length)
    reading = request.method == "GET" and length
    stream = await opened(registry.blobs.reader(digest, start, length)) if reading else None
    return BlobResponse(status, headers, stream=stream, offset=start, length=length)


def byte_range(request: Request, size: int | None, headers: dict[str, str]) -> tuple[int, int | None, int]:
    """(offset, length, status) of the answer to the request's ``Range``; a partial answer's
    ``Content-Range`` goes into ``headers``.  Without a known size the whole blob is sent."""
    header = request.headers.get("range")
    if not header or size is None:
        return 0, size, 200
    try:
        selected = parse_range(header, size)
    except Unsatisfiable:
        unsatisfiable = {"Content-Range": f"bytes */{size}"}
        raise RegistryError("RANGE_INVALID", "range not satisfiable", headers=unsatisfiable) from None
    if selected is None:
        return 0, size, 200
    start, end = selected
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return start, end - start + 1, 206


async def delete_blob(request: Request) -> Response:
    registry = registry_of(request)
    digest = digest_param(request.path_params["digest"])
    await registry.writer.delete_blob(request.path_params["name"], digest, actor_of(request))
    return Response(status_code=202, headers={"Docker-Content-Digest": str(digest)})
