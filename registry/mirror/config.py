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

from pydantic import model_validator

from configkit import Duration, Invalid, Section, Str, Strings, Text
from registry.names import NAME_RE

DEFAULT_TTL = 300.0
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


class UpstreamSettings(Section):
    """One entry of ``proxy.upstreams``."""

    prefix: Str | None = None  # required: "" mirrors at the root
    url: Str | None = None
    remoteurl: Str | None = None  # Distribution's name of url
    username: Str | None = None
    password: Str | None = None
    ttl: Duration = DEFAULT_TTL  # 0: ask the upstream on every tag request
    ns: Strings | None = None  # default: the URL's HOST[:PORT] (docker.io for Docker Hub)

    @model_validator(mode="after")
    def _check(self) -> UpstreamSettings:
        if self.url is not None and self.remoteurl is not None:
            raise Invalid("give url or remoteurl, not both")
        if self.prefix is None:
            raise Invalid('required (use "" to mirror at the root)', "prefix")
        self.upstream()
        return self

    def upstream(self) -> Upstream:
        return upstream(self.prefix or "", self.url or self.remoteurl or "", self.username, self.password,
                        self.ttl, self.ns)


class ProxyConfig(Section):
    """Distribution's one upstream (``remoteurl``...) or Moorage's ``upstreams``; empty: no mirror."""

    KEY = "proxy"

    remoteurl: Str | None = None
    username: Str | None = None
    password: Str | None = None
    ttl: Duration | None = None  # default 5m
    upstreams: list[UpstreamSettings] | None = None
    spooldir: Text | None = None

    @model_validator(mode="after")
    def _check(self) -> ProxyConfig:
        single = [k for k in ("remoteurl", "username", "password", "ttl") if getattr(self, k) is not None]
        if self.upstreams is not None:
            if "remoteurl" in single:
                raise Invalid("give remoteurl (one upstream) or upstreams, not both")
            if single:
                raise Invalid("set it on each upstream in proxy.upstreams", single[0])
            if not self.upstreams:
                raise Invalid("expected a non-empty list of upstreams", "upstreams")
        elif single and self.remoteurl is None:
            raise Invalid("required (or give proxy.upstreams)", "remoteurl")
        if self.spooldir is not None and not os.path.isdir(self.spooldir):
            raise Invalid(f"{self.spooldir!r} is not a directory", "spooldir")
        mirror = self.mirror()
        prefixes = [u.prefix for u in mirror.upstreams] if mirror else []
        for prefix in prefixes:
            if prefixes.count(prefix) > 1:
                raise Invalid(f"prefix {prefix!r} is used twice", "upstreams")
        return self

    def mirror(self) -> MirrorConfig | None:
        """None when no upstream is configured."""
        if self.upstreams is not None:
            return MirrorConfig(tuple(entry.upstream() for entry in self.upstreams), self.spooldir)
        if self.remoteurl is not None:
            ttl = DEFAULT_TTL if self.ttl is None else self.ttl
            return MirrorConfig((upstream("", self.remoteurl, self.username, self.password, ttl, None),),
                                self.spooldir)
        return None


def upstream(prefix: str, url: str, username: str | None, password: str | None, ttl: float,
             ns: list[str] | None) -> Upstream:
    """An upstream checked as a whole; Invalid names the key relative to its entry."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise Invalid(f"expected http(s)://HOST[:PORT], got {url!r}", "url")
    prefix = prefix.strip("/")
    if prefix and not NAME_RE.fullmatch(prefix):
        raise Invalid(f"{prefix!r} is not a valid repository name prefix", "prefix")
    if (username is None) != (password is None):
        raise Invalid("username and password must be given together")
    default_ns = "docker.io" if (parts.hostname or "") in DOCKER_HUB_HOSTS else parts.netloc
    return Upstream(prefix, url, username, password, ttl, tuple(ns if ns is not None else [default_ns]))


def parse_proxy(raw: Mapping[str, Any] | ProxyConfig) -> MirrorConfig | None:
    """None when no upstream is configured; ConfigError naming the key when something is wrong."""
    return ProxyConfig.parse(raw).mirror()
