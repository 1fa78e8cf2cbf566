"""The web UI's access token pages: ``/ui/tokens`` lists the user's tokens and creates one (its secret
shown once, on the answer to the form), ``/ui/tokens/{id}/revoke`` revokes. The same service and checks
as ``/api/v1/tokens`` (auth/tokens.py); forms carry the session's CSRF token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.terms import Caller, Refused, token_view
from registry.http.urls import client_address
from registry.ui.session import Forbidden, Session, csrf_ok, read_fields

if TYPE_CHECKING:
    from auth.tokens import AccessTokens
    from registry.ui.app import WebUI

SCOPE_CHOICES = {"pull": ["pull"], "pull,push": ["pull", "push"], "pull,push,delete": ["pull", "push", "delete"]}


def expiry(value: str | None) -> str | None:
    """A date from the date picker means the end of that day, UTC."""
    if value and "T" not in value:
        return value + "T23:59:59Z"
    return value or None


class TokenPages:
    def __init__(self, ui: WebUI, tokens: AccessTokens) -> None:
        self.ui = ui
        self.tokens = tokens

    def routes(self) -> list[BaseRoute]:
        view = self.ui.view
        return [
            Route("/tokens", view(lambda ui, request, session: self.page(request, session)),
                  methods=["GET", "HEAD", "POST"]),
            Route("/tokens/{id}/revoke", view(lambda ui, request, session: self.revoke(request, session)),
                  methods=["POST"]),
        ]

    def caller(self, request: Request, session: Session) -> Caller | None:
        if session.user is None:
            return None
        teams = self.ui.registry.login.credentials.memberships.teams(session.user)
        return Caller(session.user, client_address(request, self.ui.config.http), teams=teams)

    async def page(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        if caller is None:
            return RedirectResponse(f"{self.ui.base}/login?next={self.ui.base}/tokens", status_code=303)
        error, status, created = None, 200, None
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await read_fields(request)
            if not csrf_ok(session, form.get("csrf"), request, self.ui.origin(request)):
                error, status = "The form expired: reload the page and try again.", 403
            else:
                repositories = form.get("repositories", "").split() or None
                try:
                    created = await self.tokens.create(caller, form.get("name", ""),
                                                       SCOPE_CHOICES.get(form.get("scopes", ""), []),
                                                       repositories, expiry(form.get("expires")))
                    status = 201
                except Refused as e:
                    error, status = e.message, e.status
        records = await self.tokens.list(caller)
        return await self.ui.render(request, session, "tokens.html", status=status, title="Access tokens",
                                    admin=self.ui.may_administer(session),
                                    tokens=[token_view(r) for r in records], error=error, form=form,
                                    request_revoked=request.query_params.get("revoked"),
                                    created=(token_view(created.record) | {"secret": created.secret})
                                    if created else None)

    async def revoke(self, request: Request, session: Session) -> Response:
        caller = self.caller(request, session)
        form = await read_fields(request)
        if caller is None or not csrf_ok(session, form.get("csrf"), request, self.ui.origin(request)):
            raise Forbidden("the form expired: reload the page and try again")
        try:
            record = await self.tokens.revoke(caller, request.path_params["id"])
        except Refused as e:
            raise Forbidden(e.message) from None
        return RedirectResponse(f"{self.ui.base}/tokens?revoked={record.name}", status_code=303)
