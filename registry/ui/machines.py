"""The web UI's machine identities: robots and the admin's view of every access token.

    /ui/machines                          every robot and token of the registry, last use first (admins)
    /ui/machines?namespace=PATH           a namespace's robots and their tokens (its owners, admins)
    /ui/machines?user=NAME                a user's tokens (admins)
    POST /ui/machines/robots              create a robot in a namespace
    POST /ui/machines/robots/NAME/tokens  create a robot's token (its secret shown once, on the answer)
    POST /ui/machines/robots/NAME/remove  remove a robot and its tokens
    POST /ui/machines/tokens/ID/revoke    revoke any token the visitor may manage

The same service and checks as ``/api/v1/tokens`` and the robots API (auth/tokens.py); forms carry the
session's CSRF token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.terms import Caller, Refused, robot_view, token_view
from registry.ui.session import Forbidden, Session, csrf_ok, read_fields
from registry.ui.tokens import SCOPE_CHOICES, expiry

if TYPE_CHECKING:
    from auth.tokens import AccessTokens, NewToken
    from registry.ui.tokens import TokenPages

PAGE = 100


class MachinePages:
    def __init__(self, pages: TokenPages, tokens: AccessTokens) -> None:
        self.pages = pages  # the personal token pages: their caller and login redirect
        self.ui = pages.ui
        self.tokens = tokens

    def routes(self) -> list[BaseRoute]:
        view = self.ui.view
        return [
            Route("/machines", view(lambda ui, request, session: self.page(request, session)),
                  methods=["GET", "HEAD"]),
            Route("/machines/robots", view(lambda ui, request, session: self.create_robot(request, session)),
                  methods=["POST"]),
            Route("/machines/robots/{name}/tokens",
                  view(lambda ui, request, session: self.create_robot_token(request, session)), methods=["POST"]),
            Route("/machines/robots/{name}/remove",
                  view(lambda ui, request, session: self.remove_robot(request, session)), methods=["POST"]),
            Route("/machines/tokens/{id}/revoke",
                  view(lambda ui, request, session: self.revoke(request, session)), methods=["POST"]),
        ]

    def here(self, namespace: str | None = None, user: str | None = None, **notice: str) -> str:
        query = {k: v for k, v in {"namespace": namespace, "user": user, **notice}.items() if v}
        return f"{self.ui.base}/machines" + (f"?{urlencode(query)}" if query else "")

    async def page(self, request: Request, session: Session, status: int = 200, error: str | None = None,
                   created: NewToken | None = None, namespace: str | None = None) -> Response:
        caller = self.pages.caller(request, session)
        if caller is None:
            return RedirectResponse(f"{self.ui.base}/login?next={self.ui.base}/machines", status_code=303)
        params = request.query_params
        namespace = namespace or params.get("namespace") or None
        user = params.get("user") or None
        try:
            offset = max(0, int(params.get("offset") or 0))
        except ValueError:
            offset = 0
        context: dict[str, Any] = {"namespace": namespace, "user": user, "robots": None, "offset": offset}
        try:
            if user is None and namespace is None and not self.ui.may_administer(session):
                shown, more = [], False  # a namespace's owner picks the namespace first
            elif user is not None:
                records = await self.tokens.list(caller, user=user)
                shown = records[offset:offset + PAGE]
                more = len(records) > offset + PAGE
            else:
                robots, shown = await self.tokens.overview(caller, namespace, PAGE + 1, offset)
                more = len(shown) > PAGE
                shown = shown[:PAGE]
                context["robots"] = [robot_view(r) for r in robots]
        except Refused as e:
            raise Forbidden(e.message) from None
        context["following"] = (self.here(namespace, user) + ("&" if namespace or user else "?")
                                + f"offset={offset + PAGE}") if more else None
        title = (f"Robots of {namespace}" if namespace else f"Access tokens of {user}" if user
                 else "Robots and access tokens")
        return await self.ui.render(
            request, session, "machines.html", status=status, title=title, error=error,
            tokens=[token_view(r) | {"robot": r.robot is not None} for r in shown],
            notice=params.get("done"),
            created=(token_view(created.record) | {"secret": created.secret}) if created else None, **context)

    async def create_robot(self, request: Request, session: Session) -> Response:
        caller, form = await self.checked(request, session)
        namespace = form.get("namespace", "")
        try:
            robot = await self.tokens.create_robot(caller, namespace, form.get("name", ""),
                                                   SCOPE_CHOICES.get(form.get("actions", ""), []),
                                                   form.get("description") or None)
        except Refused as e:
            return await self.page(request, session, e.status, e.message, namespace=namespace or None)
        name = robot_view(robot)["name"]
        return RedirectResponse(self.here(robot.namespace, done=f"Created robot {name}."), status_code=303)

    async def create_robot_token(self, request: Request, session: Session) -> Response:
        caller, form = await self.checked(request, session)
        robot = request.path_params["name"]
        namespace = form.get("namespace") or None
        try:
            created = await self.tokens.create(caller, form.get("token", ""),
                                               SCOPE_CHOICES.get(form.get("scopes", ""), []),
                                               form.get("repositories", "").split() or None,
                                               expiry(form.get("expires")), robot=robot)
        except Refused as e:
            return await self.page(request, session, e.status, e.message, namespace=namespace)
        return await self.page(request, session, 201, created=created, namespace=namespace)

    async def remove_robot(self, request: Request, session: Session) -> Response:
        caller, form = await self.checked(request, session)
        robot = request.path_params["name"]
        try:
            await self.tokens.remove_robot(caller, robot)
        except Refused as e:
            raise Forbidden(e.message) from None
        return RedirectResponse(self.here(form.get("namespace") or None, done=f"Removed robot {robot}."),
                                status_code=303)

    async def revoke(self, request: Request, session: Session) -> Response:
        caller, form = await self.checked(request, session)
        try:
            record = await self.tokens.revoke(caller, request.path_params["id"])
        except Refused as e:
            raise Forbidden(e.message) from None
        back = self.here(form.get("namespace") or None, form.get("user") or None,
                         done=f"Revoked {record.owner}'s token {record.name}.")
        return RedirectResponse(back, status_code=303)

    async def checked(self, request: Request, session: Session) -> tuple[Caller, dict[str, str]]:
        """The visitor as a caller and the form's fields, or Forbidden (not logged in, a forged form)."""
        caller = self.pages.caller(request, session)
        form = await read_fields(request)
        if caller is None or not csrf_ok(session, form.get("csrf"), request, self.ui.origin(request)):
            raise Forbidden("the form expired: reload the page and try again")
        return caller, form
