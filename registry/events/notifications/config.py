"""The ``notifications`` section: Distribution's endpoint keys, plus Moorage's delivery settings.

Distribution's: ``endpoints[]`` {name, disabled, url, headers, timeout, threshold, backoff,
ignoredmediatypes, ignore {mediatypes, actions}} and ``events.includereferences`` (accepted; references
are not sent). Moorage's, per endpoint: ``maxbackoff`` (the wait doubles after each failure past
``threshold`` up to this), ``batch`` (events per envelope), ``maxevents`` (the queue's bound on disk: beyond
it the oldest events are dropped); for the section: ``poll`` (how often the queue
in storage is looked at for events other replicas queued) and ``lease`` (how long a replica holds an
endpoint's queue without renewing it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from configkit import Bool, Duration, Headers, Invalid, PositiveDuration, Section, Str, Strings, header_pairs, integer

ACTIONS = ("push", "pull", "delete", "mount", "replication")  # replication: a failed execution
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
    maxevents: int = 10_000  # ~4 KB each on disk
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()

    def wants(self, action: str, media_type: str | None) -> bool:
        return action not in self.ignored_actions and (media_type or "") not in self.ignored_media_types


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    endpoints: list[EndpointConfig]
    poll: float = 2.0
    lease: float = 30.0


class IgnoreSettings(Section):
    mediatypes: Strings = []
    actions: Strings = []

    @model_validator(mode="after")
    def _actions(self) -> IgnoreSettings:
        unknown = sorted(set(self.actions) - set(ACTIONS))
        if unknown:
            raise Invalid(f"unknown action {unknown[0]!r}", "actions")
        return self


class EndpointSettings(Section):
    name: Str = ""  # required: it names the queue
    disabled: Bool = False
    url: Str = ""
    headers: Headers = {}
    timeout: PositiveDuration = 1.0
    threshold: integer(0) = 10
    backoff: PositiveDuration = 1.0
    maxbackoff: Duration = 300.0
    ignoredmediatypes: Strings = []
    ignore: IgnoreSettings = Field(default_factory=IgnoreSettings)
    batch: integer(1) = 10
    maxevents: integer(1) = 10_000

    @model_validator(mode="after")
    def _check(self) -> EndpointSettings:
        if self.disabled:
            return self
        if not SAFE_NAME.fullmatch(self.name):
            raise Invalid("required, letters, digits, '.', '_' and '-' only (it names the queue)", "name")
        if not self.url.startswith(("http://", "https://")):
            raise Invalid(f"expected an http(s) URL, got {self.url!r}", "url")
        if self.maxbackoff < self.backoff:
            raise Invalid("timeout and backoff must be positive, maxbackoff at least backoff")
        return self

    def endpoint(self) -> EndpointConfig:
        return EndpointConfig(
            name=self.name, url=self.url, headers=header_pairs(self.headers), timeout=self.timeout,
            threshold=self.threshold, backoff=self.backoff, maxbackoff=self.maxbackoff, batch=self.batch,
            maxevents=self.maxevents,
            ignored_media_types=frozenset(self.ignoredmediatypes + self.ignore.mediatypes),
            ignored_actions=frozenset(self.ignore.actions),
        )


class EventsSettings(Section):
    includereferences: Bool = False  # accepted; references are not sent


class NotificationsSettings(Section):
    """``notifications``: Distribution's endpoints, Moorage's ``poll`` and ``lease``."""

    KEY = "notifications"

    endpoints: list[EndpointSettings] = []
    events: EventsSettings = Field(default_factory=EventsSettings)
    poll: PositiveDuration = 2.0
    lease: Duration = 30.0

    @model_validator(mode="after")
    def _check(self) -> NotificationsSettings:
        names = [e.name for e in self.endpoints if not e.disabled]
        if len(set(names)) != len(names):
            raise Invalid("names must be unique", "endpoints")
        if self.lease <= 2 * self.poll:
            raise Invalid("must be more than twice notifications.poll (and poll positive)", "lease")
        return self

    def settings(self) -> NotificationsConfig | None:
        """None when no endpoint is enabled."""
        endpoints = [e.endpoint() for e in self.endpoints if not e.disabled]
        return NotificationsConfig(endpoints, self.poll, self.lease) if endpoints else None


def parse_notifications(raw: Mapping[str, Any] | NotificationsSettings) -> NotificationsConfig | None:
    """None when no endpoint is enabled."""
    return NotificationsSettings.parse(raw).settings()

