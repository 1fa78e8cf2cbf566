"""Access rules: who may do what on which repositories.

Rules are ordered; for a caller and a repository the first rule whose pattern matches the name and
whose ``who`` list includes the caller decides the actions (``actions: []`` denies). Patterns are
globs over the spec's repository grammar: ``*`` stays inside one path component, ``**`` crosses
them, ``?`` is one character, ``{user}`` is the caller's name. Names outside the grammar (``..``,
``%2e``, ``//``, uppercase) match nothing, so they can never widen a glob.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from auth import settings

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
COMPONENT_RE = re.compile(NAME_COMPONENT)
MAX_NAME_LENGTH = 255
PATTERN_RE = re.compile(r"(?:[a-z0-9._/*?-]|__|\{user\})+")
REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})
ANONYMOUS, AUTHENTICATED, GROUP_PREFIX = "anonymous", "authenticated", "group:"
DEFAULT_ACCESS: dict[str, Any] = {
    "rules": [{"repositories": ["**"], "who": [AUTHENTICATED], "actions": ["*"]}],
}


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

    def __init__(self, raw: Mapping[str, Any], key: str = "auth.access") -> None:
        section = settings.checked(raw, key, ("groups", "admins", "catalog", "metrics", "rules"))
        groups = settings.checked(section.get("groups"), f"{key}.groups", None)
        self.groups: dict[str, frozenset[str]] = {}
        for name, members in groups.items():
            self.groups[str(name)] = frozenset(settings.texts(members or [], f"{key}.groups.{name}"))
        self.admins = self._who(section.get("admins", []), f"{key}.admins", allow_special=False)
        self.catalog = self._who(section.get("catalog", [AUTHENTICATED]), f"{key}.catalog")
        self.metrics = self._who(section.get("metrics", []), f"{key}.metrics")  # beside the admins
        rules = section.get("rules", [])
        if not isinstance(rules, list):
            raise ValueError(f"{key}.rules: expected a list of rules")
        self.rules = [self._rule(r, f"{key}.rules[{i}]") for i, r in enumerate(rules)]

    def groups_of(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        return frozenset(GROUP_PREFIX + g for g, members in self.groups.items() if user in members)

    def is_admin(self, user: str | None) -> bool:
        return user is not None and bool(user in self.admins or self.groups_of(user) & self.admins)

    def actions(self, user: str | None, type_: str, name: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on a resource; ``*`` stands for every action."""
        if type_ == "registry":
            who = {"catalog": self.catalog, "metrics": self.metrics}.get(name)
            if who is not None and (self.is_admin(user) or self._in(user, who)):
                return frozenset({"*"})
            return frozenset()
        if type_ != "repository" or not valid_repository(name):
            return frozenset()
        if self.is_admin(user):
            return REPOSITORY_ACTIONS | {"*"}
        groups = self.groups_of(user)
        for rule in self.rules:
            if rule.applies(user, groups, name):
                return rule.actions
        return frozenset()

    def grant(self, user: str | None, type_: str, name: str, wanted: set[str]) -> set[str]:
        """The part of ``wanted`` that the rules allow (``*`` only when everything is allowed)."""
        allowed = self.actions(user, type_, name)
        return {a for a in wanted if a in allowed}

    def _in(self, user: str | None, who: frozenset[str]) -> bool:
        if user is None:
            return ANONYMOUS in who
        return AUTHENTICATED in who or user in who or bool(self.groups_of(user) & who)

    def _who(self, raw: Any, key: str, allow_special: bool = True) -> frozenset[str]:
        who = frozenset(settings.texts(raw, key))
        for entry in who:
            if entry.startswith(GROUP_PREFIX) and entry[len(GROUP_PREFIX):] not in self.groups:
                raise ValueError(f"{key}: unknown group {entry[len(GROUP_PREFIX):]!r}")
            if not allow_special and entry in (ANONYMOUS, AUTHENTICATED):
                raise ValueError(f"{key}: {entry!r} is not allowed here")
        return who

    def _rule(self, raw: Any, key: str) -> Rule:
        settings.checked(raw, key, ("repositories", "who", "actions"))
        for required in ("repositories", "who", "actions"):
            if required not in raw:
                raise ValueError(f"{key}.{required}: required")
        patterns = tuple(settings.texts(raw["repositories"], f"{key}.repositories"))
        for p in patterns:
            if not PATTERN_RE.fullmatch(p):
                raise ValueError(
                    f"{key}.repositories: bad pattern {p!r} (lowercase names, / * ** ? and {{user}} only)"
                )
        actions = frozenset(settings.texts(raw["actions"], f"{key}.actions") if raw["actions"] else [])
        unknown = actions - REPOSITORY_ACTIONS - {"*"}
        if unknown:
            raise ValueError(f"{key}.actions: unknown action {sorted(unknown)[0]!r} (pull, push, delete, *)")
        if "*" in actions or actions >= REPOSITORY_ACTIONS:
            actions = REPOSITORY_ACTIONS | {"*"}
        return Rule(patterns, self._who(raw["who"], f"{key}.who"), actions)
