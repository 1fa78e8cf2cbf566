"""The /v2 endpoint table: path pattern, method, handler and the access each request needs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from auth.base import Access
from registry.api import blobs, catalog, manifests, referrers, tags, uploads, version

Handler = Callable[[Request], Awaitable[Response]]
AccessRule = Callable[[Request], list[Access]]
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def repo(*actions: str) -> AccessRule:
    def rule(request: Request) -> list[Access]:
        name = request.path_params["name"]
        return [Access("repository", name, action) for action in actions]

    return rule


def upload_start(request: Request) -> list[Access]:
    """POST needs pull+push on the target, and pull on ``from`` for a cross-repository mount."""
    wanted = repo("pull", "push")(request)
    source = request.query_params.get("from")
    if request.query_params.get("mount") and source and source != request.path_params["name"]:
        wanted.append(Access("repository", source, "pull"))
    return wanted


def nothing(request: Request) -> list[Access]:
    return []


def catalog_access(request: Request) -> list[Access]:
    return [Access("registry", "catalog", "*")]


@dataclass(frozen=True, slots=True)
class Endpoint:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[Handler, AccessRule]]
    named: bool  # the pattern captures a repository name
    route: str  # the template, e.g. /v2/{name}/manifests/{reference}: a metrics label and log field


def endpoint(pattern: str, methods: dict[str, tuple[Handler, AccessRule]]) -> Endpoint:
    if "GET" in methods and "HEAD" not in methods:
        methods = {**methods, "HEAD": methods["GET"]}
    template = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("/?", "/")
    return Endpoint(re.compile(pattern), methods, "(?P<name>" in pattern, template)


NAME = r"(?P<name>.+?)"
ENDPOINTS: tuple[Endpoint, ...] = (
    endpoint(r"v2/?", {"GET": (version.version_check, nothing)}),
    endpoint(r"v2/_catalog", {"GET": (catalog.list_repositories, catalog_access)}),
    endpoint(rf"v2/{NAME}/tags/list", {"GET": (tags.list_tags, repo("pull"))}),
    endpoint(
        rf"v2/{NAME}/manifests/(?P<reference>[^/]+)",
        {
            "GET": (manifests.get_manifest, repo("pull")),
            "PUT": (manifests.put_manifest, repo("pull", "push")),
            "DELETE": (manifests.delete_manifest, repo("delete")),
        },
    ),
    endpoint(rf"v2/{NAME}/blobs/uploads/?", {"POST": (uploads.start_upload, upload_start)}),
    endpoint(
        rf"v2/{NAME}/blobs/uploads/(?P<upload>[^/]+)",
        {
            "GET": (uploads.upload_status, repo("pull")),
            "PATCH": (uploads.patch_upload, repo("pull", "push")),
            "PUT": (uploads.complete_upload, repo("pull", "push")),
            "DELETE": (uploads.cancel_upload, repo("pull", "push")),
        },
    ),
    endpoint(
        rf"v2/{NAME}/blobs/(?P<digest>[^/]+)",
        {"GET": (blobs.get_blob, repo("pull")), "DELETE": (blobs.delete_blob, repo("delete"))},
    ),
    endpoint(rf"v2/{NAME}/referrers/(?P<digest>[^/]+)", {"GET": (referrers.list_referrers, repo("pull"))}),
)


def match(path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint for ``path`` (below the API prefix) and its captured parameters."""
    for candidate in ENDPOINTS:
        found = candidate.pattern.fullmatch(path)
        if found is not None:
            return candidate, found.groupdict()
    return None
