"""The ``notifications`` section: Distribution's endpoint keys, plus Moorage's delivery settings.

Distribution's: ``endpoints[]`` {name, disabled, url, headers, timeout, threshold, backoff,
ignoredmediatypes, ignore {mediatypes, actions}} and ``events.includereferences`` (accepted; references
are not sent). Moorage's, per endpoint: ``maxbackoff`` (the wait doubles after each failure past
``threshold`` up to this), ``batch`` (events per envelope); for the section: ``poll`` (how often the queue
in storage is looked at for events other replicas queued) and ``lease`` (how long a replica holds an
endpoint's queue without renewing it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.config import ConfigError, boolean, duration, integer, parse_headers, section, string, string_list

ENDPOINT_KEYS = ("name", "disabled", "url", "headers", "timeout", "threshold", "backoff", "ignoredmediatypes",
                 "ignore", "maxbackoff", "batch")
ACTIONS = ("push", "pull", "delete", "mount")
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    name: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    timeout: float = 1.0  # Distribution's defaults
    threshold: int = 10
    backoff: float = 1.0
    maxbackoff: float = 300.0
    batch: int = 10
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()

    def wants(self, action: str, media_type: str | None) -> bool:
        return action not in self.ignored_actions and (media_type or "") not in self.ignored_media_types


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    endpoints: list[EndpointConfig]
    poll: float = 2.0
    lease: float = 30.0


def parse_notifications(raw: Mapping[str, Any]) -> NotificationsConfig | None:
    """None when no endpoint is enabled."""
    top = section({"notifications": raw}, "notifications", ("endpoints", "events", "poll", "lease"))
    section(top, "notifications.events", ("includereferences",))
    endpoints_raw = top.get("endpoints") or []
    if not isinstance(endpoints_raw, list):
        raise ConfigError("notifications.endpoints: expected a list")
    endpoints = []
    for i, item in enumerate(endpoints_raw):
        endpoint = parse_endpoint(section({"e": item}, "e", ENDPOINT_KEYS), f"notifications.endpoints[{i}]")
        if endpoint is not None:
            endpoints.append(endpoint)
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError("notifications.endpoints: names must be unique")
    if not endpoints:
        return None
    poll = duration(top.get("poll", 2.0), "notifications.poll")
    lease = duration(top.get("lease", 30.0), "notifications.lease")
    if poll <= 0 or lease <= 2 * poll:
        raise ConfigError("notifications.lease: must be more than twice notifications.poll (and poll positive)")
    return NotificationsConfig(endpoints, poll, lease)


def parse_endpoint(raw: Mapping[str, Any], key: str) -> EndpointConfig | None:
    if boolean(raw.get("disabled", False), f"{key}.disabled"):
        return None
    name = string(raw.get("name", ""), f"{key}.name")
    if not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{key}.name: required, letters, digits, '.', '_' and '-' only (it names the queue)")
    url = string(raw.get("url", ""), f"{key}.url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{key}.url: expected an http(s) URL, got {url!r}")
    ignore = section(raw, f"{key}.ignore", ("mediatypes", "actions"))
    actions = frozenset(string_list(ignore.get("actions", []), f"{key}.ignore.actions"))
    if actions - set(ACTIONS):
        raise ConfigError(f"{key}.ignore.actions: unknown action {sorted(actions - set(ACTIONS))[0]!r}")
    media_types = string_list(raw.get("ignoredmediatypes", []), f"{key}.ignoredmediatypes")
    media_types += string_list(ignore.get("mediatypes", []), f"{key}.ignore.mediatypes")
    endpoint = EndpointConfig(
        name=name,
        url=url,
        headers=parse_headers(section(raw, f"{key}.headers", None), f"{key}.headers"),
        timeout=duration(raw.get("timeout", 1.0), f"{key}.timeout"),
        threshold=integer(raw.get("threshold", 10), f"{key}.threshold", minimum=0),
        backoff=duration(raw.get("backoff", 1.0), f"{key}.backoff"),
        maxbackoff=duration(raw.get("maxbackoff", 300.0), f"{key}.maxbackoff"),
        batch=integer(raw.get("batch", 10), f"{key}.batch", minimum=1),
        ignored_media_types=frozenset(media_types),
        ignored_actions=actions,
    )
    if endpoint.timeout <= 0 or endpoint.backoff <= 0 or endpoint.maxbackoff < endpoint.backoff:
        raise ConfigError(f"{key}: timeout and backoff must be positive, maxbackoff at least backoff")
    return endpoint
