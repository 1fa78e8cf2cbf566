"""A digest is its content's entity tag: ``Docker-Content-Digest``/``ETag`` and ``If-None-Match``."""

from __future__ import annotations

from starlette.requests import Request


def digest_headers(digest: str) -> dict[str, str]:
    return {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}


def not_modified(request: Request, digest: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return digest in tags or "*" in tags
