"""``GET|HEAD|DELETE /v2/<name>/blobs/<digest>``."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.common import digest_headers, not_modified, services
from registry.blob_response import BlobResponse
from registry.errors import RegistryError
from registry.names import digest_param
from registry.ranges import Unsatisfiable, parse_range
from storage.blobs import BlobUnknown


async def get_blob(request: Request) -> Response | BlobResponse:
    svc = services(request)
    name = request.path_params["name"]
    digest = digest_param(request.path_params["digest"])
    try:
        info = await svc.blobs.stat_in_repository(name, digest)
    except BlobUnknown:
        raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
    headers = {**digest_headers(str(digest)), "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}
    if not_modified(request, str(digest)):
        return Response(status_code=304, headers=headers)
    if not svc.config.storage.redirect_disabled:
        url = await svc.blobs.redirect_url(digest, request.method)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=digest_headers(str(digest)))
    size = info.size
    start, end, status = 0, size - 1, 200
    range_header = request.headers.get("range")
    if range_header:
        try:
            selected = parse_range(range_header, size)
        except Unsatisfiable:
            unsatisfiable = {"Content-Range": f"bytes */{size}"}
            raise RegistryError("RANGE_INVALID", "range not satisfiable", headers=unsatisfiable) from None
        if selected is not None:
            start, end = selected
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    headers["Content-Type"] = "application/octet-stream"
    path = svc.blobs.local_path(digest)
    if path is not None:
        try:
            fd = os.open(path, os.O_RDONLY)  # opened before answering: a concurrent delete cannot break it
        except FileNotFoundError:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
        return BlobResponse(status, headers, path=path, fd=fd, offset=start, length=length, whole=status == 200)
    stream = svc.blobs.reader(digest, start, length) if request.method == "GET" else None
    return BlobResponse(status, headers, stream=stream, offset=start, length=length)


async def delete_blob(request: Request) -> Response:
    svc = services(request)
    if not svc.config.storage.delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry")
    digest = digest_param(request.path_params["digest"])
    try:
        await svc.blobs.unlink(request.path_params["name"], digest)
    except BlobUnknown:
        raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
    return Response(status_code=202, headers={"Docker-Content-Digest": str(digest)})
