"""The web UI's pages for users and teams (admins manage them; auth/manage.py decides who may).

    /ui/users                    users, searched and paged; create (POST)
    /ui/users/NAME               a user: e-mail, password reset, disable/enable, admin, remove (POST;
                                 ?confirm=remove asks first)
    /ui/teams                    teams, paged; create (POST)
    /ui/teams/NAME               a team's members, paged: add, remove, remove the team (POST)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.terms import Refused, invalid
from registry.ui.forms import PAGE, Pages, confirming, page_after, sentence
from registry.ui.session import Session

USER_DONE = {
    "created": "User created.", "email": "E-mail address saved.", "password": "Password reset: their sessions ended.",
    "disabled": "User disabled: their sessions ended and the registry refuses them.", "enabled": "User enabled.",
    "admin": "User is now an admin.", "unadmin": "User is no longer an admin.",
}
TEAM_DONE = {"created": "Team created.", "added": "Member added.", "removed": "Member removed."}
USER_FLAGS = {"disable": ("disabled", True, "disabled"), "enable": ("disabled", False, "enabled"),
              "admin": ("admin", True, "admin"), "unadmin": ("admin", False, "unadmin")}  # field, value, done


class AdminPages(Pages):
    def menu(self, user: str | None) -> list[tuple[str, str]]:
        return [("Users", "/users"), ("Teams", "/teams")] if self.is_admin(user) else []

    def routes(self) -> list[BaseRoute]:
        get_post = ["GET", "HEAD", "POST"]
        return [
            Route("/users", self.view(self.users), methods=get_post),
            Route("/users/{name}", self.view(self.user), methods=get_post),
            Route("/teams", self.view(self.teams), methods=get_post),
            Route("/teams/{name}", self.view(self.team), methods=get_post),
        ]

    # --- users ---------------------------------------------------------------------------------------

    async def users(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        error, status, entered = None, 200, {}
        if request.method == "POST":
            entered = await self.form(request, session)
            try:
                user = await self.management.create_user(
                    caller, entered.get("name", "").strip(), entered.get("password", ""),
                    entered.get("email", "").strip() or None, admin=entered.get("admin") == "on")
                return await self.changed(f"users/{user.name}", done="created")
            except Refused as e:
                error, status = sentence(e.message), e.status
        term = request.query_params.get("q", "").strip()
        last = page_after(request)
        found = await self.management.list_users(caller, last, PAGE + 1, term or None)
        following = found[PAGE - 1].name if len(found) > PAGE else None
        return await self.render(request, session, "users.html", status=status, title="Users", users=found[:PAGE],
                           term=term, following=following, first=bool(last), error=error,
                           entered={k: v for k, v in entered.items() if k != "password"},
                           removed=request.query_params.get("removed"))

    async def user(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        name = request.path_params["name"]
        error, status = None, 200
        if request.method == "POST":
            fields = await self.form(request, session)
            action = fields.get("action", "")
            try:
                if action == "remove":
                    await self.management.remove_user(caller, name)
                    return await self.changed("users", removed=name)
                if action in USER_FLAGS:
                    key, value, done = USER_FLAGS[action]
                    await self.management.update_user(caller, name, **{key: value})
                    return await self.changed(f"users/{name}", done=done)
                if action == "password":
                    await self.management.update_user(caller, name, password=fields.get("password", ""))
                    return await self.changed(f"users/{name}", done="password")
                if action == "email":
                    await self.management.update_user(caller, name, email=fields.get("email", "").strip() or None)
                    return await self.changed(f"users/{name}", done="email")
                raise invalid(f"unknown action {action[:40]!r}")
            except Refused as e:
                if e.status == 404:
                    raise
                error, status = sentence(e.message), e.status
        record, teams = await self.management.get_user(caller, name)
        snapshot = await self.snapshot()
        last_admin = record.admin and not record.disabled and snapshot.admins == frozenset({name})
        may_manage = self.is_admin(caller.name)
        done = USER_DONE.get(request.query_params.get("done", ""))
        return await self.render(request, session, "user.html", status=status, title=f"User {name}", user=record,
                           teams=teams, last_admin=last_admin, may_manage=may_manage, error=error, done=done,
                           confirm=may_manage and not last_admin and confirming(request))

    # --- teams ---------------------------------------------------------------------------------------

    async def teams(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        error, status, entered = None, 200, ""
        if request.method == "POST":
            entered = (await self.form(request, session)).get("name", "").strip()
            try:
                team = await self.management.create_team(caller, entered)
                return await self.changed(f"teams/{team.name}", done="created")
            except Refused as e:
                error, status = sentence(e.message), e.status
        last = page_after(request)
        found = await self.management.list_teams(caller, last, PAGE + 1)
        following = found[PAGE - 1].name if len(found) > PAGE else None
        return await self.render(request, session, "teams.html", status=status, title="Teams", teams=found[:PAGE],
                           following=following, first=bool(last), error=error, entered=entered,
                           may_manage=self.is_admin(caller.name), removed=request.query_params.get("removed"))

    async def team(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        name = request.path_params["name"]
        error, status, entered = None, 200, ""
        if request.method == "POST":
            fields = await self.form(request, session)
            action = fields.get("action", "")
            entered = fields.get("user", "").strip()
            try:
                if action == "add":
                    await self.management.add_team_member(caller, name, entered)
                    return await self.changed(f"teams/{name}", done="added")
                if action == "remove-member":
                    await self.management.remove_team_member(caller, name, entered)
                    return await self.changed(f"teams/{name}", done="removed")
                if action == "remove":
                    await self.management.remove_team(caller, name)
                    return await self.changed("teams", removed=name)
                raise invalid(f"unknown action {action[:40]!r}")
            except Refused as e:
                error, status = sentence(e.message), e.status
        last = page_after(request)
        team, members = await self.management.get_team(caller, name, last, PAGE + 1)
        following = members[PAGE - 1] if len(members) > PAGE else None
        may_manage = self.is_admin(caller.name)
        return await self.render(request, session, "team.html", status=status, title=f"Team {name}", team=team,
                           members=members[:PAGE], following=following, first=bool(last), error=error,
                           done=TEAM_DONE.get(request.query_params.get("done", "")), entered=entered,
                           confirm=may_manage and confirming(request), may_manage=may_manage)
