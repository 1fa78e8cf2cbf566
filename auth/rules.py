"""Access rules: who may do what on which repositories.

Rules are ordered; for a caller and a repository the first rule whose pattern matches the name and
whose ``who`` list includes the caller decides the actions (``actions: []`` denies). Patterns are
globs over the spec's repository grammar: ``*`` stays inside one path component, ``**`` crosses
them, ``?`` is one character, ``{user}`` is the caller's name. Names outside the grammar (``..``,
``%2e``, ``//``, uppercase) match nothing, so they can never widen a glob.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from auth.settings import (
    ANONYMOUS,
    AUTHENTICATED,
    DEFAULT_ACCESS,
    GROUP_PREFIX,
    REPOSITORY_ACTIONS,
    TEAM_PREFIX,
    AccessSettings,
)

__all__ = ["DEFAULT_ACCESS", "AccessRules", "Rule", "valid_repository"]

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
COMPONENT_RE = re.compile(NAME_COMPONENT)
MAX_NAME_LENGTH = 255


def valid_repository(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


@lru_cache(maxsize=4096)
def glob_regex(pattern: str, user: str) -> re.Pattern[str] | None:
    """The regex for ``pattern`` as seen by ``user``; None when ``{user}`` cannot apply to them."""
    if "{user}" in pattern and not COMPONENT_RE.fullmatch(user):
        return None
    parts = []
    for token in re.split(r"(\*\*|\*|\?|\{user\})", pattern):
        if token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        elif token == "{user}":
            parts.append(re.escape(user))
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


@dataclass(frozen=True, slots=True)
class Rule:
    patterns: tuple[str, ...]
    who: frozenset[str]
    actions: frozenset[str]

    def applies(self, user: str | None, groups: frozenset[str], name: str) -> bool:
        if user is None:
            if ANONYMOUS not in self.who:
                return False
        elif not (AUTHENTICATED in self.who or user in self.who or groups & self.who):
            return False
        return any(
            (rx := glob_regex(p, user or "")) is not None and rx.fullmatch(name) for p in self.patterns
        )


class AccessRules:
    """The ``auth.access`` section, compiled."""

    def __init__(self, raw: Mapping[str, Any] | AccessSettings, key: str = "auth.access",
                 teams: Callable[[str], frozenset[str]] | None = None) -> None:
        """``teams``: the teams a user is in (directory groups), which rules name ``team:NAME``."""
        settings = AccessSettings.parse(raw, key)
        self.teams = teams
        self.groups = {name: frozenset(members or ()) for name, members in settings.groups.items()}
        self.admins = frozenset(settings.admins)
        self.catalog = frozenset(settings.catalog)
        self.metrics = frozenset(settings.metrics)  # beside the admins
        self.rules = [Rule(tuple(r.repositories), frozenset(r.who), expand(r.actions or ())) for r in settings.rules]

    def groups_of(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        groups = frozenset(GROUP_PREFIX + g for g, members in self.groups.items() if user in members)
        if self.teams is None:
            return groups
        return groups | frozenset(TEAM_PREFIX + team for team in self.teams(user))

    def is_admin(self, user: str | None) -> bool:
        return user is not None and bool(user in self.admins or self.groups_of(user) & self.admins)

    def actions(self, user: str | None, type_: str, name: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on a resource; ``*`` stands for every action."""
        if type_ == "registry":  # replication: its rules and executions, admins only
            who = {"catalog": self.catalog, "metrics": self.metrics, "replication": frozenset()}.get(name)
            if who is not None and (self.is_admin(user) or self._in(user, who)):
                return frozenset({"*"})
            return frozenset()
        if type_ != "repository" or not valid_repository(name):
            return frozenset()
        if self.is_admin(user):
            return REPOSITORY_ACTIONS | {"*"}
        decided = self.decide(user, name)
        return decided if decided is not None else frozenset()

    def decide(self, user: str | None, repository: str) -> frozenset[str] | None:
        """The actions of the first rule matching ``repository`` and the caller; None when no rule does
        (then a database may decide: auth.policy)."""
        groups = self.groups_of(user)
        for rule in self.rules:
            if rule.applies(user, groups, repository):
                return rule.actions
        return None

    def may_decide(self, repository: str) -> bool:
        """Whether some rule's pattern matches ``repository`` for some caller (``{user}`` standing for
        any one of its components), so that the rules, not a database, may decide there."""
        users = set(repository.split("/"))
        return any(rx is not None and rx.fullmatch(repository)
                   for rule in self.rules for p in rule.patterns for user in users
                   for rx in (glob_regex(p, user),))

    async def refresh(self, writes: bool = False) -> None:
        """Nothing to refresh: the rules are the config's (the database's policy has something to do)."""

    def grant(self, user: str | None, type_: str, name: str, wanted: set[str]) -> set[str]:
        """The part of ``wanted`` that the rules allow (``*`` only when everything is allowed)."""
        allowed = self.actions(user, type_, name)
        return {a for a in wanted if a in allowed}

    def _in(self, user: str | None, who: frozenset[str]) -> bool:
        if user is None:
            return ANONYMOUS in who
        return AUTHENTICATED in who or user in who or bool(self.groups_of(user) & who)


def expand(actions: list[str] | tuple[str, ...]) -> frozenset[str]:
    """``*``, or all three actions, is everything (``*`` included, so a token scope ``*`` is granted)."""
    granted = frozenset(actions)
    if "*" in granted or granted >= REPOSITORY_ACTIONS:
        return REPOSITORY_ACTIONS | {"*"}
    return granted
