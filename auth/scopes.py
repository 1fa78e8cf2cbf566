"""Token scopes (``repository:team/app:pull,push``) as the token spec writes them."""

from __future__ import annotations

from auth.base import Access


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``type:name:actions``; the name may itself contain ``:`` (``host:5000/app``). None if malformed."""
    type_, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and type_ and name and actions):
        return None
    return type_, name, [a for a in actions.split(",") if a]


def format_scopes(accesses: list[Access]) -> str:
    """One ``type:name:a,b`` per resource, space separated, in first-seen order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in accesses:
        actions = grouped.setdefault((a.type, a.name), [])
        if a.action not in actions:
            actions.append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in grouped.items())
