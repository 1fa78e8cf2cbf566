"""The distribution spec's error codes and their JSON body."""

from __future__ import annotations

import json

from starlette.responses import Response

from auth.base import AuthFailure

# code -> (HTTP status, default message), as in the OCI distribution spec and Distribution's errcode.
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "unknown error"),
    # Moorage's management API (/api/v1)
    "INVALID_REQUEST": (400, "invalid request"),
    "NOT_FOUND": (404, "not found"),
    "CONFLICT": (409, "conflict"),
}


class RegistryError(Exception):
    """Raised by handlers and turned into the spec's error response by the app."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        detail: object = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}


def error_body(code: str, message: str, detail: object = None) -> bytes:
    entry: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def error_response(error: RegistryError) -> Response:
    # The JSON body sets its own length; a Content-Length carried over from success headers would lie.
    headers = {k: v for k, v in error.headers.items() if k.lower() != "content-length"}
    return Response(
        error_body(error.code, error.message, error.detail),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def auth_failure_response(failure: AuthFailure) -> Response:
    """The access controller's refusal (401 with its challenge, or 403) in the spec's format."""
    headers = {"WWW-Authenticate": failure.challenge} if failure.challenge else {}
    headers.update(failure.headers)
    return Response(
        error_body(failure.code, failure.message, failure.detail),
        status_code=failure.status,
        headers=headers,
        media_type="application/json",
    )
