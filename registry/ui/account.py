"""The web UI's account page: who I am here, my teams, my namespaces and roles, and changing my password
(the current one first; every other session of mine ends, this one goes on) or e-mail address.

    /ui/account                  GET; POST action=password|email
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth import roles
from auth.brake import TooManyAttempts
from auth.credentials import SourceUnavailable
from auth.policy import namespaces_of
from auth.terms import Caller, Refused, invalid
from registry.ui.forms import Pages, sentence
from registry.ui.session import Session

DONE = {"password": "Password changed: your other sessions ended; docker must log in again with the new one.",
        "email": "E-mail address saved."}


class AccountPages(Pages):
    def routes(self) -> list[BaseRoute]:
        self.ui.env.globals["account_page"] = f"{self.ui.base}/account"
        return [Route("/account", self.view(self.account), methods=["GET", "HEAD", "POST"])]

    async def account(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        if caller.name is None:
            raise Refused(403, "DENIED", "Log in to see your account.")
        error, status = None, 200
        if request.method == "POST":
            fields = await self.form(request, session)
            try:
                if fields.get("action") == "password":
                    await self.change_password(caller, fields, session)
                    return await self.changed("account", done="password")
                if fields.get("action") == "email":
                    email = fields.get("email", "").strip() or None
                    await self.management.update_user(caller, caller.name, email=email)
                    return await self.changed("account", done="email")
                raise invalid("unknown action")
            except Refused as e:
                error, status = sentence(e.message), e.status
        snapshot = await self.snapshot()
        record = None
        if caller.name in snapshot.users:  # a user of the database (not only of a directory or file)
            record, _ = await self.management.get_user(caller, caller.name)
        held = sorted(namespaces_of(snapshot, caller.name, caller.teams))
        if record is not None and caller.name not in snapshot.namespaces:
            held.insert(0, (caller.name, roles.OWNER))  # created on first use: theirs already
        teams = sorted(snapshot.teams_of(caller.name, caller.teams))
        return await self.render(request, session, "account.html", status=status, title="Your account", record=record,
                           admin=self.is_admin(caller.name), teams=teams, namespaces=held, error=error,
                           done=DONE.get(request.query_params.get("done", "")))

    async def change_password(self, caller: Caller, fields: dict[str, str], session: Session) -> None:
        """The current password proves it is them (through the login brake); then the service changes it,
        which moves their credentials stamp: every session bound to the old one ends, and this one is
        bound to the new one."""
        user = caller.name
        assert user is not None
        new = fields.get("password", "")
        if new != fields.get("repeat", ""):
            raise invalid("The new password and its repetition differ.")
        try:
            identity = await self.ui.registry.login.check(user, fields.get("current", ""), caller.address)
        except TooManyAttempts as e:
            wait = math.ceil(e.retry_after)
            raise Refused(429, "TOOMANYREQUESTS", f"Too many failed attempts: try again in {wait} s.") from None
        except SourceUnavailable as e:
            raise Refused(503, "UNAVAILABLE", f"Your password cannot be checked right now ({e}).") from None
        if identity is None:
            raise Refused(403, "DENIED", "The current password is wrong.")
        await self.management.update_user(caller, user, password=new)
        if self.management.cache is not None:
            await self.management.cache.refresh()  # the new stamp, for this session
        await self.ui.sessions.log_in(session, user)
