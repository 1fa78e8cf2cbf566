"""The ``proxy`` config section: Distribution's one-upstream form, or Moorage's list of upstreams.

One upstream (Distribution's keys)::

    proxy: {remoteurl: https://registry-1.docker.io, username: u, password: p, ttl: 10m}

mirrors it at the root of the registry: ``library/nginx`` here is ``library/nginx`` upstream, as the
Docker daemon's ``registry-mirrors`` expects.  A list mounts each upstream below a local prefix::

    proxy:
      upstreams:
        - {prefix: dockerhub, url: https://registry-1.docker.io, ttl: 10m}
        - {prefix: ghcr, url: https://ghcr.io, username: u, password: p, ns: [ghcr.io]}

Names outside every prefix stay an ordinary registry that accepts pushes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from registry.config import ConfigError, duration, section, string, string_list
from registry.names import NAME_RE

DEFAULT_TTL = 300.0
SINGLE_KEYS = ("remoteurl", "username", "password", "ttl", "spooldir")
LIST_KEYS = ("upstreams", "spooldir")
UPSTREAM_KEYS = ("prefix", "url", "remoteurl", "username", "password", "ttl", "ns")
# Docker Hub answers under several host names; containerd sends ns=docker.io for all of them
DOCKER_HUB_HOSTS = frozenset(
    {"docker.io", "registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"}
)


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream registry and the local namespace that mirrors it."""

    prefix: str  # "" mirrors it at the root of the registry
    url: str  # scheme://host[:port], no trailing slash
    username: str | None
    password: str | None
    ttl: float  # seconds a cached tag is served without asking the upstream
    ns: tuple[str, ...]  # containerd ``ns`` values routed to this upstream

    @property
    def docker_hub(self) -> bool:
        return (urlsplit(self.url).hostname or "") in DOCKER_HUB_HOSTS


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    upstreams: tuple[Upstream, ...]
    spooldir: str | None  # where blobs being downloaded are spooled for the clients that wait on them


def parse_proxy(raw: Mapping[str, Any]) -> MirrorConfig | None:
    """None when no upstream is configured; ConfigError naming the key when something is wrong."""
    if not raw:
        return None
    if "upstreams" in raw and "remoteurl" in raw:
        raise ConfigError("proxy: give remoteurl (one upstream) or upstreams, not both")
    if "upstreams" in raw:
        section(raw, "proxy", LIST_KEYS)
        entries = raw["upstreams"]
        if not isinstance(entries, list) or not entries:
            raise ConfigError("proxy.upstreams: expected a non-empty list of upstreams")
        upstreams = tuple(parse_upstream(e, f"proxy.upstreams[{i}]", True) for i, e in enumerate(entries))
    else:
        section(raw, "proxy", SINGLE_KEYS)
        if not raw.get("remoteurl"):
            raise ConfigError("proxy.remoteurl: required (or give proxy.upstreams)")
        upstreams = (parse_upstream({k: v for k, v in raw.items() if k != "spooldir"}, "proxy", False),)
    seen: dict[str, str] = {}
    for upstream in upstreams:
        if upstream.prefix in seen:
            raise ConfigError(f"proxy.upstreams: prefix {upstream.prefix!r} is used twice")
        seen[upstream.prefix] = upstream.url
    spooldir = raw.get("spooldir")
    if spooldir is not None:
        spooldir = string(spooldir, "proxy.spooldir")
        if not os.path.isdir(spooldir):
            raise ConfigError(f"proxy.spooldir: {spooldir!r} is not a directory")
    return MirrorConfig(upstreams, spooldir)


def parse_upstream(raw: Any, key: str, listed: bool) -> Upstream:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping")
    for sub in raw:
        if sub not in UPSTREAM_KEYS or (not listed and sub in ("prefix", "url", "ns")):
            raise ConfigError(f"{key}.{sub}: unknown key")
    if "url" in raw and "remoteurl" in raw:
        raise ConfigError(f"{key}: give url or remoteurl, not both")
    url = string(raw.get("url", raw.get("remoteurl", "")), f"{key}.url").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ConfigError(f"{key}.url: expected http(s)://HOST[:PORT], got {url!r}")
    prefix = string(raw.get("prefix", ""), f"{key}.prefix").strip("/")
    if listed and not prefix and "prefix" not in raw:
        raise ConfigError(f"{key}.prefix: required (use \"\" to mirror at the root)")
    if prefix and not NAME_RE.fullmatch(prefix):
        raise ConfigError(f"{key}.prefix: {prefix!r} is not a valid repository name prefix")
    username = raw.get("username")
    password = raw.get("password")
    if (username is None) != (password is None):
        raise ConfigError(f"{key}: username and password must be given together")
    ttl = duration(raw["ttl"], f"{key}.ttl") if raw.get("ttl") is not None else DEFAULT_TTL
    if ttl < 0:
        raise ConfigError(f"{key}.ttl: must not be negative")
    host = parts.hostname or ""
    default_ns = "docker.io" if host in DOCKER_HUB_HOSTS else parts.netloc
    ns = tuple(string_list(raw.get("ns", [default_ns]), f"{key}.ns"))
    return Upstream(
        prefix=prefix,
        url=url,
        username=None if username is None else string(username, f"{key}.username"),
        password=None if password is None else string(password, f"{key}.password"),
        ttl=ttl,
        ns=ns,
    )
