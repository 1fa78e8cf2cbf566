"""``GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>``: reads through the request's repository, writes
through the registry's write path."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from registry import offload
from registry.api.context import actor_of, publish_pull, registry_of, repository_of
from registry.api.etags import digest_headers, not_modified
from registry.errors import RegistryError
from registry.http.urls import location
from registry.mediatypes import INDEX_TYPES, MAX_MANIFEST_SIZE, detect_media_type
from registry.names import digest_param, is_tag
from registry.repository import Repository
from registry.writes.events import EventKind
from storage.digests import Digest
from storage.manifests import ManifestUnknown, TagUnknown

DEFAULT_PLATFORM = ("linux", "amd64")


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
        media_type = await offload.sized(len(content), detect_media_type, content)
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
    if request.method == "HEAD":
        return Response(b"", headers=headers)
    await publish_pull(request, EventKind.MANIFEST_PULLED, digest, (reference,) if is_tag(reference) else (),
                       media_type, len(content))
    return Response(content, headers=headers)


def accepts(request: Request, media_type: str) -> bool:
    """False only when the client lists the types it reads and this one is not among them."""
    header = ",".join(request.headers.getlist("accept"))
    listed = {part.split(";", 1)[0].strip().lower() for part in header.split(",") if part.strip()}
    return not listed or media_type in listed or "*/*" in listed


async def default_platform(repo: Repository, content: bytes, request: Request) -> tuple[Digest, bytes, str] | None:
    """The index's linux/amd64 image, if the client reads its type (raises ManifestUnknown)."""
    for child in (await offload.sized(len(content), json.loads, content)).get("manifests", []):
        platform = child.get("platform") or {}
        if (platform.get("os"), platform.get("architecture")) == DEFAULT_PLATFORM:
            image = await repo.manifest_by_digest(digest_param(child.get("digest", "")))
            image_type = await offload.sized(len(image.content), detect_media_type, image.content)
            if accepts(request, image_type):
                return image.digest, image.content, image_type
    return None


async def put_manifest(request: Request) -> Response:
    registry = registry_of(request)
    name = request.path_params["name"]
    content = await read_limited(request)
    extra_tags = request.query_params.getlist("tag")
    pushed = await registry.writer.put_manifest(name, request.path_params["reference"], content,
                                                request.headers.get("content-type"), actor_of(request), extra_tags)
    headers = {
        "Location": location(request, registry.config.http, f"v2/{name}/manifests/{pushed.digest}"),
        "Docker-Content-Digest": str(pushed.digest),
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = str(pushed.subject)
    if extra_tags:
        headers["OCI-Tag"] = ", ".join(pushed.tags)
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


async def delete_manifest(request: Request) -> Response:
    registry = registry_of(request)
    await registry.writer.delete(request.path_params["name"], request.path_params["reference"], actor_of(request))
    return Response(status_code=202)
