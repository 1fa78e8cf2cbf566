"""Retention policies: which tags of a repository expire (``storage.maintenance.retention``).

Policies are ordered; the first whose ``repositories`` glob (the access rules' syntax: ``*`` within a
path component, ``**`` across) matches a repository decides for it.  Within a policy, tags matching
``protect`` are never touched and tags matching ``keeptags`` are kept; of the others, the
``keepnewest`` most recently pushed are kept, and the rest expire when ``olderthan`` is set and they
are older than it (all of them when only ``keepnewest`` is set).  A tag's age is the time it was last
pushed or moved (its link's modification time).  Expired tags are removed by the GC run that applies
the policies, and the manifests they named go in the same run unless something still needs them.

With ``auth.database``, a namespace's own ``retention`` setting is a policy for the repositories it
covers, after the file's (the file holds what an operator wants fixed, as for rules and quotas); of the
namespaces, the closest one that sets a retention decides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import model_validator

from auth.rules import glob_regex
from auth.settings import PATTERN_RE, TAG_PATTERN_RE
from configkit import ConfigError, Duration, Invalid, Section, Texts, compiled, convert, integer

log = logging.getLogger("moorage.gc")


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


class PolicySettings(Section):
    repositories: Texts
    keepnewest: integer(0) | None = None
    keeptags: Texts = []
    olderthan: Duration | None = None
    protect: Texts = []

    @model_validator(mode="after")
    def _check(self) -> PolicySettings:
        for pattern in self.repositories:
            if not PATTERN_RE.fullmatch(pattern) or "{user}" in pattern:
                raise Invalid(f"bad pattern {pattern!r} (lowercase names, / * ** ? only)", "repositories")
        for name in ("keeptags", "protect"):
            for pattern in getattr(self, name):
                if not TAG_PATTERN_RE.fullmatch(pattern):
                    raise Invalid(f"bad tag pattern {pattern!r}", name)
        if self.keepnewest is None and self.olderthan is None:
            raise Invalid("set keepnewest, olderthan or both (otherwise nothing expires)")
        return self

    def policy(self) -> Policy:
        return Policy(tuple(self.repositories), self.keepnewest, tuple(self.keeptags), self.olderthan,
                      tuple(self.protect))


class RetentionSettings(Section):
    policies: list[PolicySettings] = []


RetentionConfig = Annotated[
    Retention, compiled(RetentionSettings, lambda s: Retention([p.policy() for p in s.policies]))
]  # ``storage.maintenance.retention``, compiled


def parse_retention(raw: Mapping[str, Any], key: str = "storage.maintenance.retention") -> Retention:
    return convert(RetentionConfig, raw, key)


NAMESPACE_POLICY_KEYS = ("keepnewest", "keeptags", "olderthan", "protect")


def check_namespace_retention(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A namespace's retention (a policy whose repositories are the namespace's): checked as a policy,
    returned with only its keys; a ValueError names the bad key."""
    unknown = sorted(set(raw) - set(NAMESPACE_POLICY_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(NAMESPACE_POLICY_KEYS)})")
    PolicySettings.parse({**raw, "repositories": ["namespace"]}, "")
    return {key: raw[key] for key in NAMESPACE_POLICY_KEYS if key in raw}



def with_namespaces(file: Retention | None, namespaces: Mapping[str, Mapping[str, Any]]) -> Retention | None:
    """The file's policies, then one per namespace that sets a retention (``namespaces``: path -> its
    setting) for the repositories it covers, the longest path first so the closest namespace decides.
    A stored setting that no longer passes the checks is skipped with a warning, not the whole run."""
    policies = list(file.policies) if file is not None else []
    for path in sorted(namespaces, key=lambda p: (-p.count("/"), p)):
        try:
            settings = PolicySettings.parse({**namespaces[path], "repositories": [path, f"{path}/**"]}, "")
        except ConfigError as e:
            log.warning("namespace %s: retention skipped: %s", path, e)
            continue
        policies.append(settings.policy())
    return Retention(policies) if policies else None
