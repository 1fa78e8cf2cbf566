"""Retention policies: which tags of a repository expire (``storage.maintenance.retention``).

Policies are ordered; the first whose ``repositories`` glob (the access rules' syntax: ``*`` within a
path component, ``**`` across) matches a repository decides for it.  Within a policy, tags matching
``protect`` are never touched and tags matching ``keeptags`` are kept; of the others, the
``keepnewest`` most recently pushed are kept, and the rest expire when ``olderthan`` is set and they
are older than it (all of them when only ``keepnewest`` is set).  A tag's age is the time it was last
pushed or moved (its link's modification time).  Expired tags are removed by the GC run that applies
the policies, and the manifests they named go in the same run unless something still needs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auth.rules import PATTERN_RE, glob_regex
from registry.config import ConfigError, duration, integer, string_list

POLICY_KEYS = ("repositories", "keepnewest", "keeptags", "olderthan", "protect")
TAG_PATTERN_RE = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")


@dataclass(frozen=True, slots=True)
class Policy:
    repositories: tuple[str, ...]
    keep_newest: int | None = None
    keep: tuple[str, ...] = ()
    older_than: float | None = None
    protect: tuple[str, ...] = ()

    def applies(self, name: str) -> bool:
        return any((rx := glob_regex(p, "")) is not None and rx.fullmatch(name) for p in self.repositories)

    def expired(self, tags: Mapping[str, float], now: float) -> list[str]:
        """The tags (name -> time last pushed) this policy removes, oldest first."""
        candidates = [t for t in tags if not _matches(self.protect, t) and not _matches(self.keep, t)]
        candidates.sort(key=lambda t: (-tags[t], t))  # newest first
        if self.keep_newest is not None:
            candidates = candidates[self.keep_newest:]
        elif self.older_than is None:
            return []
        if self.older_than is not None:
            candidates = [t for t in candidates if now - tags[t] > self.older_than]
        return sorted(candidates, key=lambda t: (tags[t], t))


def _matches(patterns: tuple[str, ...], tag: str) -> bool:
    return any((rx := glob_regex(p, "")) is not None and rx.fullmatch(tag) for p in patterns)


@dataclass(slots=True)
class Retention:
    policies: list[Policy]

    def applies(self, name: str) -> bool:
        return self.policy_for(name) is not None

    def policy_for(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.applies(name)), None)

    def expired(self, name: str, tags: Mapping[str, float], now: float) -> list[str]:
        policy = self.policy_for(name)
        return policy.expired(tags, now) if policy is not None else []


def parse_retention(raw: Mapping[str, Any], key: str = "storage.maintenance.retention") -> Retention:
    settings = _mapping(raw, key, ("policies",))
    policies = settings.get("policies", [])
    if not isinstance(policies, list):
        raise ConfigError(f"{key}.policies: expected a list of policies")
    return Retention([parse_policy(p, f"{key}.policies[{i}]") for i, p in enumerate(policies)])


def _mapping(raw: Any, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping")
    for sub in raw:
        if sub not in allowed:
            raise ConfigError(f"{key}.{sub}: unknown key (known: {', '.join(allowed)})")
    return raw


def parse_policy(raw: Any, key: str) -> Policy:
    settings = _mapping(raw, key, POLICY_KEYS)
    if "repositories" not in settings:
        raise ConfigError(f"{key}.repositories: required")
    repositories = tuple(string_list(settings["repositories"], f"{key}.repositories"))
    for pattern in repositories:
        if not PATTERN_RE.fullmatch(pattern) or "{user}" in pattern:
            raise ConfigError(f"{key}.repositories: bad pattern {pattern!r} (lowercase names, / * ** ? only)")
    tag_lists = {}
    for name in ("keeptags", "protect"):
        tag_lists[name] = tuple(string_list(settings.get(name, []), f"{key}.{name}"))
        for pattern in tag_lists[name]:
            if not TAG_PATTERN_RE.fullmatch(pattern):
                raise ConfigError(f"{key}.{name}: bad tag pattern {pattern!r}")
    keep_newest = settings.get("keepnewest")
    older_than = settings.get("olderthan")
    if keep_newest is None and older_than is None:
        raise ConfigError(f"{key}: set keepnewest, olderthan or both (otherwise nothing expires)")
    return Policy(
        repositories=repositories,
        keep_newest=integer(keep_newest, f"{key}.keepnewest") if keep_newest is not None else None,
        keep=tag_lists["keeptags"],
        older_than=duration(older_than, f"{key}.olderthan") if older_than is not None else None,
        protect=tag_lists["protect"],
    )
