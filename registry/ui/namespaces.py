"""The web UI's namespace pages: what a namespace is and who holds which role on it, for everyone who
may see it; the forms for whoever may change it (auth/manage.py decides: owners its members and
visibility, maintainers its retention and immutable tags, admins its quota).

    /ui/namespaces               the namespaces this visitor may see, paged; create one (POST)
    /ui/namespaces/PATH          a namespace: members, visibility, quota, retention, immutable tags (POST;
                                 ?confirm=remove asks before removing it)
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth import roles
from auth.policy import namespaces_of
from auth.terms import Caller, Refused, invalid
from registry.maintenance.quotas import to_size
from registry.ui.forms import PAGE, Pages, confirming, page_after, sentence, split_list
from registry.ui.session import Session
from storage.database.records import NamespaceRecord

DONE = {
    "created": "Namespace created.", "member": "Member saved.", "unmember": "Member removed.",
    "visibility": "Visibility saved.", "quota": "Quota saved.", "retention": "Retention saved.",
    "immutable": "Immutable tags saved.",
}


class NamespacePages(Pages):
    def menu(self, user: str | None) -> list[tuple[str, str]]:
        return [("Namespaces", "/namespaces")] if user is not None else []

    def routes(self) -> list[BaseRoute]:
        get_post = ["GET", "HEAD", "POST"]
        return [
            Route("/namespaces", self.view(self.namespaces), methods=get_post),
            Route("/namespaces/{path:path}", self.view(self.namespace), methods=get_post),
        ]

    async def namespaces(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        error, status, entered = None, 200, {}
        if request.method == "POST":
            entered = await self.form(request, session)
            try:
                ns = await self.management.create_namespace(caller, entered.get("path", "").strip(),
                                                            public=entered.get("public") == "on")
                return await self.changed(f"namespaces/{ns.path}", done="created")
            except Refused as e:
                error, status = sentence(e.message), e.status
        last = page_after(request)
        found = await self.management.list_namespaces(caller, last, PAGE + 1)
        following = found[PAGE - 1].record.path if len(found) > PAGE else None
        return await self.render(request, session, "namespaces.html", status=status, title="Namespaces",
                           namespaces=found[:PAGE], following=following, first=bool(last), error=error,
                           entered=entered, may_create=await self.may_create(caller),
                           removed=request.query_params.get("removed"))

    async def namespace(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        path = request.path_params["path"].rstrip("/")
        error, status, entered = None, 200, {}
        if request.method == "POST":
            entered = await self.form(request, session)
            try:
                target, said = await self.act(caller, path, entered)
                return await self.changed(target, **said)
            except Refused as e:
                error, status = sentence(e.message), e.status
        view = await self.management.get_namespace(caller, path)
        ns = view.record
        admin = self.is_admin(caller.name)
        role = view.role
        parent = ns.path.rpartition("/")[0]
        snapshot = await self.snapshot()
        over_parent = bool(parent) and snapshot.managed_by(caller.name, parent, caller.teams) == roles.OWNER
        may_remove = admin or (over_parent and ns.personal is None)
        return await self.render(
            request, session, "namespace.html", status=status, title=f"Namespace {ns.path}", ns=ns,
            members=view.members, role=role, admin=admin, error=error, entered=entered,
            done=DONE.get(request.query_params.get("done", "")), retention=retention_fields(ns),
            may_members=role == roles.OWNER, may_visibility=role == roles.OWNER,
            may_settings=roles.at_least(role, roles.MAINTAINER), may_quota=admin and "/" not in ns.path,
            may_remove=may_remove, confirm=may_remove and confirming(request),
            holders=self.ui.registry.login.holders(ns.path, "push"))

    async def act(self, caller: Caller, path: str, fields: dict[str, str]) -> tuple[str, dict[str, str]]:
        """One form's change; the page to go on to and what it should say was done."""
        action = fields.get("action", "")
        manage = self.management
        here = f"namespaces/{path}"
        if action == "member":
            await manage.set_member(caller, path, fields.get("kind", ""), fields.get("name", "").strip(),
                                    fields.get("role", ""))
        elif action == "unmember":
            await manage.remove_member(caller, path, fields.get("kind", ""), fields.get("name", "").strip())
        elif action == "visibility":
            if fields.get("visibility") not in ("public", "private"):
                raise invalid("visibility is public or private")
            await manage.update_namespace(caller, path, public=fields["visibility"] == "public")
        elif action == "quota":
            await manage.update_namespace(caller, path, quota=quota_from(fields.get("quota", "")))
        elif action == "retention":
            await manage.update_namespace(caller, path, retention=retention_from(fields))
        elif action == "immutable":
            await manage.update_namespace(caller, path, immutable_tags=split_list(fields.get("patterns", "")))
        elif action == "create":
            child = fields.get("name", "").strip().strip("/")
            if not child:
                raise invalid("name the namespace to create below this one")
            created = await manage.create_namespace(caller, f"{path}/{child}", public=fields.get("public") == "on")
            return f"namespaces/{created.path}", {"done": "created"}
        elif action == "remove":
            await manage.remove_namespace(caller, path)
            return "namespaces", {"removed": path}
        else:
            raise invalid(f"unknown action {action[:40]!r}")
        return here, {"done": action}

    async def may_create(self, caller: Caller) -> bool:
        """Admins create namespaces, owners below theirs: the form is offered to them."""
        if caller.name is None:
            return False
        if self.is_admin(caller.name):
            return True
        held = namespaces_of(await self.snapshot(), caller.name, caller.teams)
        return any(role == roles.OWNER for _, role in held)


def quota_from(text: str) -> int | None:
    """``10GiB``, ``500MB`` or bytes; empty: no quota."""
    text = text.strip()
    if not text:
        return None
    try:
        return to_size(text)
    except ValueError as e:
        raise invalid(f"quota: {e}") from None


def retention_from(fields: dict[str, str]) -> dict[str, Any] | None:
    """The retention form as a policy (the service checks it); every field empty: no retention."""
    policy: dict[str, Any] = {}
    keepnewest = fields.get("keepnewest", "").strip()
    if keepnewest:
        policy["keepnewest"] = int(keepnewest) if keepnewest.isdigit() else keepnewest
    olderthan = fields.get("olderthan", "").strip()
    if olderthan:
        policy["olderthan"] = olderthan
    for key in ("keeptags", "protect"):
        patterns = split_list(fields.get(key, ""))
        if patterns:
            policy[key] = patterns
    return policy or None


def retention_fields(ns: NamespaceRecord) -> dict[str, str]:
    """The namespace's retention as the form shows it."""
    policy = ns.retention or {}
    return {"keepnewest": str(policy.get("keepnewest", "")), "olderthan": str(policy.get("olderthan", "")),
            "keeptags": ", ".join(policy.get("keeptags", ())), "protect": ", ".join(policy.get("protect", ()))}
