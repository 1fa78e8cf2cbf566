"""What an answered request did to the registry's content: push, pull, delete or mount of a manifest or
blob, read off the route, the method, the status and the answer's headers (no handler is involved).

The audit trail and notifications both start from this.  HEAD requests transfer nothing and make no
activity; a pull answered with 304 (the client's copy is current) neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from registry.events.observe import Exchange
from registry.names import is_tag

MANIFEST = "/v2/{name}/manifests/{reference}"
BLOB = "/v2/{name}/blobs/{digest}"
UPLOAD_START = "/v2/{name}/blobs/uploads/"
UPLOAD = "/v2/{name}/blobs/uploads/{upload}"
BLOB_MEDIA_TYPE = "application/octet-stream"  # what Distribution's blob events carry
CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)$")


@dataclass(frozen=True, slots=True)
class Activity:
    action: str  # push, pull, delete, mount
    kind: str  # manifest, blob, tag
    repository: str
    digest: str | None = None
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None  # None: unknown here (a blob push), to be looked up
    from_repository: str | None = None


def activity(exchange: Exchange) -> Activity | None:
    route, method, status = exchange.route, exchange.method, exchange.status
    repository = exchange.repository
    if repository is None or not 200 <= status < 400:
        return None
    params = exchange.scope.get("path_params") or {}
    headers = exchange.response_headers
    digest = headers.get("docker-content-digest")
    if route == MANIFEST:
        reference = params.get("reference", "")
        tag = reference if is_tag(reference) else None
        if method == "GET" and status == 200:
            return Activity("pull", "manifest", repository, digest, tag, headers.get("content-type"),
                            number(headers.get("content-length")))
        if method == "PUT" and status == 201:
            media_type = (exchange.header("content-type") or "").split(";")[0].strip() or None
            return Activity("push", "manifest", repository, digest, tag, media_type, exchange.bytes_in)
        if method == "DELETE" and status == 202:
            if tag is not None:
                return Activity("delete", "tag", repository, tag=tag)
            return Activity("delete", "manifest", repository, reference)
    elif route == BLOB:
        if method == "GET" and status in (200, 206, 307):
            size = number(headers.get("content-length")) if status == 200 else None
            if status == 206:
                total = CONTENT_RANGE_TOTAL.search(headers.get("content-range", ""))
                size = int(total.group(1)) if total else None
            return Activity("pull", "blob", repository, digest or params.get("digest"), None, BLOB_MEDIA_TYPE,
                            size)
        if method == "DELETE" and status == 202:
            return Activity("delete", "blob", repository, digest or params.get("digest"))
    elif status == 201 and ((route == UPLOAD_START and method == "POST") or (route == UPLOAD and method == "PUT")):
        query = parse_qs(exchange.scope.get("query_string", b"").decode("latin-1"))
        if route == UPLOAD_START and "mount" in query:
            source = query.get("from", [None])[0]
            return Activity("mount", "blob", repository, digest, media_type=BLOB_MEDIA_TYPE, from_repository=source)
        return Activity("push", "blob", repository, digest, media_type=BLOB_MEDIA_TYPE)
    return None


def number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
