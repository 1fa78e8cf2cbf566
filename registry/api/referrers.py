"""``GET /v2/<name>/referrers/<digest>``: always an OCI index, empty when nothing refers to the digest."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.context import registry_of
from registry.names import digest_param

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


async def list_referrers(request: Request) -> Response:
    registry = registry_of(request)
    subject = digest_param(request.path_params["digest"])
    descriptors = await registry.referrers.list(request.path_params["name"], subject)
    headers = {}
    wanted = request.query_params.getlist("artifactType")
    if wanted:
        descriptors = [d for d in descriptors if d.get("artifactType") in wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": descriptors}
    return JSONResponse(body, headers=headers, media_type=INDEX_MEDIA_TYPE)
