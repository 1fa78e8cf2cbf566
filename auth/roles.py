"""Roles on a namespace, lowest first, and the repository actions each allows.

``reader`` pulls; ``developer`` also pushes; ``maintainer`` also deletes and sets retention and immutable
tags; ``owner`` also manages the namespace's members and visibility.  A role never allows less than the
ones before it, so "at least" is a comparison of ranks.
"""

from __future__ import annotations

from collections.abc import Iterable

from auth.settings import REPOSITORY_ACTIONS
from storage.database.records import ROLES

READER, DEVELOPER, MAINTAINER, OWNER = ROLES
RANK = {role: rank for rank, role in enumerate(ROLES)}
EVERYTHING = REPOSITORY_ACTIONS | {"*"}
ACTIONS: dict[str, frozenset[str]] = {
    READER: frozenset({"pull"}),
    DEVELOPER: frozenset({"pull", "push"}),
    MAINTAINER: EVERYTHING,
    OWNER: EVERYTHING,
}


def at_least(role: str | None, wanted: str) -> bool:
    return role is not None and RANK[role] >= RANK[wanted]


def highest(roles: Iterable[str | None]) -> str | None:
    held = [r for r in roles if r is not None]
    return max(held, key=RANK.__getitem__) if held else None
