"""The /v2 reads of mirrored repositories: make sure the content is stored, then let the core serve it.

``mirror_route`` is the one hook the app's dispatch calls: it maps a request to its upstream (by the
repository's prefix, or containerd's ``ns`` query parameter), refuses writes there, and swaps the core's
GET/HEAD handler of manifests, blobs and tags for the mirror's.  Everything else stays the core's.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from registry.api import blobs, manifests, tags
from registry.api.common import digest_headers, next_link, page_size, services
from registry.errors import RegistryError
from registry.manifests import INDEX_TYPES, detect_media_type
from registry.mirror.cache import STALE_WARNING, Mirror, Route
from registry.mirror.upstream import UpstreamError, UpstreamNotFound
from registry.names import digest_param, is_tag
from registry.ranges import Unsatisfiable, parse_range
from registry.routes import WRITE_METHODS, Handler
from storage.digests import Digest

ROUTE_KEY = "moorage.mirror.route"


def mirror_route(mirror: Mirror, request: Request, params: dict[str, str], handler: Handler) -> Handler:
    """The handler for a request on ``params["name"]``; rewrites the name when ``ns`` maps it."""
    route = mirror.route(params["name"], request.query_params.get("ns"))
    if route is None:
        return handler
    if request.scope["method"] in WRITE_METHODS:
        where = f"{route.upstream.prefix}/" if route.upstream.prefix else "this registry"
        raise RegistryError(
            "UNSUPPORTED",
            f"{where} is a read-only mirror of {route.upstream.url}: push to the upstream instead",
            detail={"name": route.local, "upstream": route.upstream.url},
        )
    params["name"] = route.local
    request.scope[ROUTE_KEY] = route
    return MIRRORED.get(handler, handler)


def context(request: Request) -> tuple[Mirror, Route]:
    mirror = services(request).mirror
    assert mirror is not None
    return mirror, request.scope[ROUTE_KEY]


async def get_manifest(request: Request) -> Response:
    mirror, route = context(request)
    reference = request.path_params["reference"]
    if is_tag(reference):
        served = await mirror.manifest_by_tag(route, reference)
    else:
        served = await mirror.manifest_by_digest(route, digest_param(reference))
    await fetch_fallback_platform(request, mirror, route, served.digest)
    response = await manifests.get_manifest(request)
    if served.warning:
        response.headers["Warning"] = served.warning
    return response


async def fetch_fallback_platform(request: Request, mirror: Mirror, route: Route, digest: Digest) -> None:
    """A client that cannot read an index gets its linux/amd64 image: make sure that one is stored."""
    content = await services(request).manifests.get(route.local, digest)
    media_type = detect_media_type(content)
    if media_type not in INDEX_TYPES or manifests.accepts(request, media_type):
        return
    for child in json.loads(content).get("manifests", []):
        platform = child.get("platform") or {}
        if (platform.get("os"), platform.get("architecture")) == manifests.DEFAULT_PLATFORM:
            await mirror.manifest_by_digest(route, digest_param(child.get("digest", "")))
            return


async def get_blob(request: Request) -> Response:
    mirror, route = context(request)
    digest = digest_param(request.path_params["digest"])
    headers = {**digest_headers(str(digest)), "Content-Type": "application/octet-stream"}
    if request.method == "HEAD":
        size = await mirror.blob_size(route, digest)
        if size is None:
            return await blobs.get_blob(request)
        return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
    spool = await mirror.blob(route, digest)
    if spool is None:
        return await blobs.get_blob(request)
    # no await from here until the reader is open: a finished spool leaves the disk
    size = spool.size
    start, length, status = 0, size, 200
    range_header = request.headers.get("range")
    if range_header and size is not None:
        try:
            selected = parse_range(range_header, size)
        except Unsatisfiable:
            raise RegistryError("RANGE_INVALID", "range not satisfiable",
                                headers={"Content-Range": f"bytes */{size}"}) from None
        if selected is not None:
            start, length, status = selected[0], selected[1] - selected[0] + 1, 206
            headers["Content-Range"] = f"bytes {selected[0]}-{selected[1]}/{size}"
    if length is not None:
        headers["Content-Length"] = str(length)
    return StreamingResponse(spool.reader(start, length), status_code=status, headers=headers)


async def list_tags(request: Request) -> Response:
    mirror, route = context(request)
    n = page_size(request, None)
    query = {k: v for k in ("n", "last") if (v := request.query_params.get(k))}
    try:
        doc, more = await mirror.tag_list(route, query)
    except UpstreamNotFound:
        raise RegistryError("NAME_UNKNOWN", detail={"name": route.local}) from None
    except UpstreamError as e:
        response = await tags.list_tags(request)  # what this mirror holds, marked stale
        response.headers["Warning"] = STALE_WARNING
        mirror.record("tags", route, "list", "stale", f" ({e})")
        return response
    headers = {}
    if more and n and doc["tags"]:
        headers["Link"] = next_link(request, doc["tags"][-1], n)
    return JSONResponse(doc, headers=headers)


MIRRORED: dict[Handler, Handler] = {
    manifests.get_manifest: get_manifest,
    blobs.get_blob: get_blob,
    tags.list_tags: list_tags,
}
