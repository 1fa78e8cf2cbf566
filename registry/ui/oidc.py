"""The web UI's single sign-on: ``/ui/oidc/login`` sends the browser to the OpenID provider, and
``/ui/oidc/callback`` takes its answer (auth.oidc checks it) and logs the user in.

The login in progress (state, nonce, PKCE verifier, the page to return to) travels in its own signed
cookie, ``SameSite=Lax`` so the browser sends it back on the provider's cross-site redirect (the session
cookie is ``Strict`` and would not be). The callback answers with a page that moves on to the target with
a meta refresh: a same-site navigation, on which the new session cookie is sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.accounts import SubjectMismatch
from auth.credentials import SourceUnavailable
from auth.oidc import LOGIN_TTL, LoginRefused, OpenIDConnect, Pending
from registry.ui.session import Session, safe_next

if TYPE_CHECKING:
    from registry.ui.app import WebUI

log = logging.getLogger("moorage.ui")
COOKIE = "moorage_oidc"


class SingleSignOn:
    def __init__(self, ui: WebUI, oidc: OpenIDConnect) -> None:
        self.ui = ui
        self.oidc = oidc
        self.path = f"{ui.base}/oidc"
        self.serializer = URLSafeTimedSerializer(ui.sessions.secret, salt="moorage-oidc-login")

    def routes(self) -> list[BaseRoute]:
        view = self.ui.view
        return [
            Route("/oidc/login", view(lambda ui, request, session: self.login(request, session)),
                  methods=["GET", "HEAD"]),
            Route("/oidc/callback", view(lambda ui, request, session: self.callback(request, session)),
                  methods=["GET"]),
        ]

    def redirect_uri(self, request: Request) -> str:
        return self.oidc.settings.redirecturl or f"{self.ui.origin(request)}{self.path}/callback"

    async def login(self, request: Request, session: Session) -> Response:
        target = safe_next(request.query_params.get("next"), self.ui.base)
        try:
            url, pending = await self.oidc.start(self.redirect_uri(request), target)
        except SourceUnavailable as e:
            return await self.refused(request, session, str(e), 503)
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(COOKIE, self.serializer.dumps(pending.as_dict()), max_age=int(LOGIN_TTL),
                            path=self.path, httponly=True, samesite="lax", secure=self.secure(request))
        return response

    async def callback(self, request: Request, session: Session) -> Response:
        pending = self.pending(request)
        try:
            identity = await self.oidc.finish(request.query_params, pending, self.redirect_uri(request))
            owner = await self.ui.registry.login.owner(identity.name)
            if owner not in (None, "oidc"):
                log.warning("OIDC login refused: %r is a %s user", identity.name, owner)
                raise LoginRefused(f"The name {identity.name!r} belongs to an account of this registry that "
                                   "does not log in through single sign-on.")
        except LoginRefused as e:
            log.info("OIDC login refused: %s", e)
            response = await self.refused(request, session, str(e), 401)
        except SourceUnavailable as e:
            response = await self.refused(request, session, str(e), 503)
        else:
            try:
                await self.ui.registry.login.credentials.arrived(identity)
            except SubjectMismatch as e:
                log.warning("OIDC login refused: %s", e)
                return self.finish(await self.refused(request, session, f"{str(e).capitalize()}.", 401))
            await self.ui.sessions.log_in(session, identity.name)
            log.info("OIDC login: %s (teams %s)", identity.name, ", ".join(sorted(identity.teams)) or "none")
            assert pending is not None
            response = await self.ui.render(request, session, "continue.html", title="Logged in", target=pending.target)
        return self.finish(response)

    def finish(self, response: Response) -> Response:
        """The login in progress is over, whatever came of it."""
        response.delete_cookie(COOKIE, path=self.path)
        return response

    def pending(self, request: Request) -> Pending | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            return Pending.from_dict(self.serializer.loads(raw, max_age=LOGIN_TTL))
        except BadSignature:
            return None

    async def refused(self, request: Request, session: Session, message: str, status: int) -> Response:
        title = "Single sign-on unavailable" if status == 503 else "Single sign-on failed"
        return await self.ui.render(request, session, "error.html", status=status, title=title, message=message)

    def secure(self, request: Request) -> bool:
        return self.ui.origin(request).startswith("https:")
