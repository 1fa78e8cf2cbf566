"""Replication rules and remotes as the engine uses them: which repositories and tags a rule takes, what
they are called on the other side, and how it copies (the config section in ``config`` builds them).

Names follow the access rules' globs (``*`` within a path component, ``**`` across); tags match a glob
of ``tags`` and ``tagregex`` when set, and no glob of ``excludetags``.  The destination name is the
source name with ``strip`` removed from its front and ``prefix`` put there instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from auth.rules import glob_regex

PUSH, PULL = "push", "pull"
EVENT, SCHEDULE, MANUAL = "event", "schedule", "manual"
# the OCI referrers tag schema (``sha256-<hex>``): an index of a subject's referrers on registries
# without the referrers API; copied as referrers, never as a tag of its own
REFERRERS_TAG_RE = re.compile(r"[a-z0-9]+-[a-f0-9]{32,128}")


def globs(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = (glob_regex(p, "") for p in patterns)
    return tuple(rx for rx in compiled if rx is not None)


def matches_any(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return any(rx.fullmatch(text) for rx in patterns)


@dataclass(frozen=True, slots=True)
class Remote:
    """Another registry: where it is, how to log in, how to trust it."""

    name: str
    url: str  # scheme://host[:port], no trailing slash
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    insecure: bool = False
    timeout: float = 30.0  # seconds to connect, and between two pieces of an answer


@dataclass(frozen=True, slots=True)
class Retry:
    """A failed execution is run again ``attempts`` times at most, ``backoff`` doubling after each."""

    attempts: int = 3
    backoff: float = 30.0
    maxbackoff: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        return float(min(self.backoff * 2 ** max(0, attempt - 1), self.maxbackoff))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    direction: str  # PUSH: here -> remote; PULL: remote -> here
    remote: Remote
    repositories: tuple[str, ...] = ("**",)
    exclude_repositories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ("*",)
    tag_regex: re.Pattern[str] | None = None
    exclude_tags: tuple[str, ...] = ()
    artifact_types: frozenset[str] = frozenset()  # empty: any
    labels: dict[str, str] = field(default_factory=dict)  # image config labels that must all match
    strip: str = ""  # removed from the front of a source name
    prefix: str = ""  # put in front of the destination name
    trigger: str = MANUAL
    interval: float | None = None
    cron: str | None = None
    deletes: bool = False
    overwrite: bool = True  # a destination tag that names another manifest is moved
    referrers: bool = True  # signatures, SBOMs and attestations go with their subjects
    recheck: float = 21600.0  # seconds the ledger's word on a destination tag is taken (registry.replication.ledger)
    concurrency: int = 4  # blobs in flight at once
    bandwidth: int = 0  # bytes per second over all of the rule's transfers; 0: unlimited
    chunksize: int = 0  # upload blobs in PATCHes of this size; 0: one request per blob
    requestretries: int = 3  # a request that failed transiently is sent again this often
    retry: Retry = field(default_factory=Retry)
    _repositories: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)
    _exclude_repositories: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)
    _tags: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)
    _exclude_tags: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_repositories", globs(self.repositories))
        object.__setattr__(self, "_exclude_repositories", globs(self.exclude_repositories))
        object.__setattr__(self, "_tags", globs(self.tags))
        object.__setattr__(self, "_exclude_tags", globs(self.exclude_tags))

    def takes_repository(self, name: str) -> bool:
        """Whether the rule replicates the source repository ``name``."""
        if self.strip and not (name == self.strip or name.startswith(self.strip + "/")):
            return False
        return matches_any(self._repositories, name) and not matches_any(self._exclude_repositories, name)

    def takes_tag(self, tag: str) -> bool:
        if REFERRERS_TAG_RE.fullmatch(tag):
            return False
        if not matches_any(self._tags, tag) or matches_any(self._exclude_tags, tag):
            return False
        return self.tag_regex is None or self.tag_regex.fullmatch(tag) is not None

    def destination(self, name: str) -> str:
        """The name of source repository ``name`` on the destination."""
        rest = name[len(self.strip):].lstrip("/") if self.strip else name
        return "/".join(part for part in (self.prefix, rest) if part)

    def source(self, destination: str) -> str | None:
        """The source name of a destination repository; None when the rule does not name it so."""
        if self.prefix:
            if not destination.startswith(self.prefix + "/"):
                return None
            destination = destination[len(self.prefix) + 1:]
        return "/".join(part for part in (self.strip, destination) if part)

    @property
    def literal_repositories(self) -> tuple[str, ...] | None:
        """The repositories by name when no pattern has a wildcard (no catalog needed to find them)."""
        if any(ch in p for p in self.repositories for ch in "*?"):
            return None
        return self.repositories

    def summary(self) -> dict[str, Any]:
        """The rule as the API and the UI show it (no credentials)."""
        return {
            "name": self.name, "direction": self.direction, "remote": self.remote.name, "url": self.remote.url,
            "repositories": list(self.repositories), "excluderepositories": list(self.exclude_repositories),
            "tags": list(self.tags), "tagregex": self.tag_regex.pattern if self.tag_regex else None,
            "excludetags": list(self.exclude_tags), "artifacttypes": sorted(self.artifact_types),
            "labels": dict(self.labels), "destination": {"strip": self.strip, "prefix": self.prefix},
            "trigger": self.trigger, "interval": self.interval, "cron": self.cron, "deletes": self.deletes,
            "overwrite": self.overwrite, "referrers": self.referrers, "recheck": self.recheck,
            "concurrency": self.concurrency, "bandwidth": self.bandwidth,
        }
