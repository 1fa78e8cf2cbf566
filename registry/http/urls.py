"""Absolute or relative URLs for ``Location`` headers, right behind proxies too."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

from starlette.requests import Request

from registry.config import HTTPConfig


def base_url(request: Request, http: HTTPConfig) -> str:
    """``scheme://host`` the client used; "" when relative URLs are configured."""
    if http.relativeurls:
        return ""
    return origin(request, http)


def origin(request: Request, http: HTTPConfig) -> str:
    """``scheme://host`` the client used, even with relative URLs (a token realm must be absolute)."""
    if http.host:
        return http.host
    scheme = request.url.scheme
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    if is_trusted_proxy(request, http.trustedproxies):
        forwarded_proto = request.headers.get("x-forwarded-proto")
        forwarded_host = request.headers.get("x-forwarded-host")
        if forwarded_proto:
            scheme = forwarded_proto.split(",")[0].strip()
        if forwarded_host:
            host = forwarded_host.split(",")[0].strip()
    return f"{scheme}://{host}"


def client_address(request: Request, http: HTTPConfig) -> str:
    """The client's address: the peer, or behind a trusted proxy the address it appended to
    ``X-Forwarded-For`` (the last one: earlier entries are whatever the client sent)."""
    peer = request.client.host if request.client else ""
    if is_trusted_proxy(request, http.trustedproxies):
        forwarded = request.headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded
    return peer


def is_trusted_proxy(request: Request, trusted: list[str]) -> bool:
    if not trusted or request.client is None:
        return False
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(net, strict=False) for net in trusted)


def location(request: Request, http: HTTPConfig, path: str) -> str:
    """``path`` is below the API prefix, e.g. ``v2/team/app/blobs/uploads/ID``."""
    return f"{base_url(request, http)}{http.prefix}{quote(path, safe='/:@=&?')}"
