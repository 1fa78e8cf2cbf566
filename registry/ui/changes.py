"""The web UI's change log: every change to users, teams and namespaces (who, what, from where, before
and after), newest first, as the service recorded it in the database (the ``changes`` table, written in
the same transaction as the change).  Admins see every change, owners those of their namespaces.

    /ui/changes?namespace=PATH&before=ID
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth import roles
from auth.policy import namespaces_of
from auth.terms import invalid
from registry.ui.forms import PAGE, Pages
from registry.ui.session import Session
from storage.database.records import ChangeRecord


@dataclass(frozen=True, slots=True)
class Difference:
    field: str
    before: Any
    after: Any


class ChangePages(Pages):
    def menu(self, user: str | None) -> list[tuple[str, str]]:
        """Admins and owners see changes: the entry for those who own some namespace, or are admins."""
        snapshot = self.management.cache.peek() if self.management.cache is not None else None
        if user is None or snapshot is None:
            return []
        owner = self.is_admin(user) or any(role == roles.OWNER for _, role in namespaces_of(snapshot, user))
        return [("Changes", "/changes")] if owner else []

    def routes(self) -> list[BaseRoute]:
        self.ui.env.filters["recorded"] = shown
        return [Route("/changes", self.view(self.changes), methods=["GET", "HEAD"])]

    async def changes(self, request: Request, session: Session) -> Response:
        params = request.query_params
        namespace = params.get("namespace") or None
        raw = params.get("before", "")
        if raw and not raw.isdigit():
            raise invalid("before: the number of a change")
        before = int(raw) if raw else None
        found = await self.management.list_changes(self.caller(request, session), before, PAGE + 1, namespace)
        following = found[PAGE - 1].id if len(found) > PAGE else None
        rows = [(change, differences(change)) for change in found[:PAGE]]
        title = f"Changes in {namespace}" if namespace else "Changes"
        return await self.render(request, session, "changes.html", title=title, rows=rows, namespace=namespace,
                           following=following, first=before is not None)


def differences(change: ChangeRecord) -> list[Difference]:
    """What changed, field by field: every field of an object created or removed, the fields that
    differ in an update."""
    before, after = change.before, change.after
    if not isinstance(before, dict) or not isinstance(after, dict):
        before = before if isinstance(before, dict) else ({} if before is None else {"value": before})
        after = after if isinstance(after, dict) else ({} if after is None else {"value": after})
    fields = list(dict.fromkeys([*before, *after]))
    return [Difference(key, before.get(key), after.get(key))
            for key in fields if empty_as_none(before.get(key)) != empty_as_none(after.get(key))]


def empty_as_none(value: Any) -> Any:
    """A field that was unset and one that is empty read alike (no quota, no tags): no difference."""
    return None if value in (None, "", [], {}) else value


def shown(value: Any) -> str:
    """A recorded value as the page shows it (quotas go through the size filter instead)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
