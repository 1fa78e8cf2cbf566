"""Reading a url-encoded POST form within bounds: the token server's OAuth2 requests and the web UI's
login both take one."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, list[str]] | None:
    """The urlencoded POST body, every value of each field; None if it is too large or not a form."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields
