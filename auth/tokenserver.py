"""The built-in token server (Docker token spec and its OAuth2 variant).

``GET`` takes Basic credentials (or none, for anonymous access), ``service``, repeated ``scope``,
``account``, ``offline_token`` and ``client_id``. ``POST`` takes an OAuth2 form with
``grant_type=password`` or ``grant_type=refresh_token``. The token grants the intersection of the
requested scopes and the access rules; a partial (even empty) grant is not an error.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.base import MAX_USER_NAME, peer_address, plausible_user
from auth.basic import EMPTY_BASIC, basic_credentials, scoped
from auth.brake import TooManyAttempts, retry_after
from auth.challenge import header
from auth.credentials import CredentialRefused, Credentials, Identity, Scope, SourceUnavailable
from auth.forms import read_form
from auth.issuer import TokenIssuer
from auth.metrics import tokens_issued, tokens_refused
from auth.policy import DatabasePolicy
from auth.rules import AccessRules
from auth.scopes import parse_scope
from storage.database import DatabaseUnavailable

log = logging.getLogger("moorage.auth")

MAX_SCOPES = 100
TOKEN_BINDING = "token:"  # a refresh token's tag when it came from an access token
class TokenServer:
    def __init__(self, issuer: TokenIssuer, credentials: Credentials, rules: AccessRules | DatabasePolicy,
                 address: Callable[[Request], str] = peer_address) -> None:
        """``address`` tells the client's address for the brake (the registry's honours trusted proxies)."""
        self.issuer, self.credentials, self.rules = issuer, credentials, rules
        self.address = address
        self.challenge = header("Basic", realm=issuer.service)

    def routes(self, path: str) -> list[BaseRoute]:
        return [Route(path, self.endpoint, methods=["GET", "POST"], name="moorage-token")]

    async def endpoint(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self.post(request)
            return await self.get(request)
        except TooManyAttempts as e:
            log.warning("token braked: too many failed logins from %s", self.address(request))
            body = {"errors": [{"code": "TOOMANYREQUESTS", "message": str(e)}],
                    "error": "invalid_grant", "error_description": str(e)}
            return JSONResponse(body, status_code=429, headers=retry_after(e))
        except CredentialRefused as e:
            log.info("token refused: %s", e)
            tokens_refused.labels("expired").inc()
            if request.method == "POST":
                return self._oauth_error(401, "invalid_grant", str(e))
            return self._unauthorized(str(e))
        except (SourceUnavailable, DatabaseUnavailable) as e:
            log.warning("token unavailable: %s", e)
            tokens_refused.labels("unavailable").inc()
            body = {"errors": [{"code": "UNAVAILABLE", "message": str(e)}],
                    "error": "temporarily_unavailable", "error_description": str(e)}
            return JSONResponse(body, status_code=503, headers=retry_after(e.retry_after))

    async def _check(self, request: Request, user: str, password: str) -> Identity | None:
        return await self.credentials.verify(user, password, self.address(request))

    async def get(self, request: Request) -> Response:
        params = request.query_params
        if (bad := self._service_mismatch(params.get("service"))) is not None:
            return bad
        user: str | None = None
        identity: Identity | None = None
        authorization = (request.headers.get("authorization") or "").strip()
        if authorization and authorization != EMPTY_BASIC:
            credentials = basic_credentials(authorization)
            identity = None if credentials is None else await self._check(request, *credentials)
            if credentials is None or identity is None:
                log.info("token refused: invalid credentials for user %r", credentials and credentials[0])
                tokens_refused.labels("invalid_credentials").inc()
                return self._unauthorized("invalid username or password")
            user = identity.name
            account = params.get("account")
            if account and account not in (user, credentials[0]):
                tokens_refused.labels("account_mismatch").inc()
                return self._unauthorized("account does not match the credentials")
        offline = params.get("offline_token", "").lower() == "true"
        await self.rules.refresh()
        body = self._grant(user, params.getlist("scope"), identity)
        if offline and identity is not None:
            body["refresh_token"] = self.issuer.refresh_token(identity.name, self.bind(identity))
        log.info("token issued to %s (client %r)", user or "anonymous", params.get("client_id", "-"))
        tokens_issued.labels("basic").inc()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def post(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            tokens_refused.labels("bad_request").inc()
            return self._oauth_error(400, "invalid_request", "expected a small urlencoded form")
        fields = {name: values[0] for name, values in form.items()}
        if (bad := self._service_mismatch(fields.get("service"))) is not None:
            return bad
        grant_type = fields.get("grant_type")
        scopes = form.get("scope", [])
        await self.rules.refresh()
        if grant_type == "password":
            name, password = fields.get("username", ""), fields.get("password", "")
            identity = await self._check(request, name, password) if plausible_user(name) else None
            if identity is None:
                log.info("token refused: invalid credentials for user %r", name[:MAX_USER_NAME])
                tokens_refused.labels("invalid_credentials").inc()
                return self._oauth_error(401, "invalid_grant", "invalid username or password")
            user = identity.name
            body = self._grant(user, scopes, identity)
            if fields.get("access_type") == "offline":
                body["refresh_token"] = self.issuer.refresh_token(user, self.bind(identity))
        elif grant_type == "refresh_token":
            try:
                user, tag = self.issuer.read_refresh_token(fields.get("refresh_token", ""))
            except jwt.PyJWTError:
                tokens_refused.labels("invalid_refresh_token").inc()
                return self._oauth_error(401, "invalid_grant", "invalid or expired refresh token")
            try:
                identity = await self.rebind(user, tag)
            except CredentialRefused as e:
                tokens_refused.labels("expired").inc()
                return self._oauth_error(401, "invalid_grant", str(e))
            if identity is None:
                tokens_refused.labels("revoked").inc()
                return self._oauth_error(401, "invalid_grant", "refresh token revoked")
            body = self._grant(user, scopes, identity)
        else:
            message = "grant_type must be password or refresh_token"
            tokens_refused.labels("bad_request").inc()
            return self._oauth_error(400, "unsupported_grant_type", message)
        log.info("token issued to %s (client %r, %s grant)", user, fields.get("client_id", "-"), grant_type)
        tokens_issued.labels(grant_type).inc()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def bind(self, identity: Identity) -> str:
        """What a refresh token is bound to: the access token it came from, or the password's stamp."""
        if identity.scope is not None:
            return f"{TOKEN_BINDING}{identity.scope.token}"
        return self.credentials.stamp(identity.name) or ""

    async def rebind(self, user: str, tag: str) -> Identity | None:
        """The identity a refresh token stands for now; None when revoked (password changed, user or
        access token gone). Raises CredentialRefused for an expired access token."""
        if tag.startswith(TOKEN_BINDING):
            identity = await self.credentials.token_identity(tag[len(TOKEN_BINDING):])
            return identity if identity is not None and identity.name == user else None
        if self.credentials.stamp(user) != tag:
            return None
        return await self.credentials.current(user)

    def _grant(self, user: str | None, scope_params: Iterable[str], identity: Identity | None = None
               ) -> dict[str, Any]:
        scope = identity.scope if identity is not None else None
        access = self.access(user, [s for p in scope_params for s in p.split()][:MAX_SCOPES], scope)
        signed = self.issuer.access_token(user, access, scope.claim() if scope is not None else None)
        issued = datetime.datetime.fromtimestamp(signed.issued_at, datetime.UTC)
        return {
            "token": signed.token, "access_token": signed.token, "expires_in": signed.expires_in,
            "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def access(self, user: str | None, scopes: list[str], limit: Scope | None = None) -> list[dict[str, Any]]:
        """Intersect each requested scope with the rules (and an access token's ``limit``); unknown or
        malformed scopes give nothing."""
        granted: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            type_, name, actions = parsed
            allowed = scoped(self.rules, user, limit, type_, name)
            have = granted.setdefault((type_, name), [])
            have.extend(a for a in actions if a in allowed and a not in have)
        return [{"type": t, "name": n, "actions": acts} for (t, n), acts in granted.items() if acts]

    def _service_mismatch(self, service: str | None) -> Response | None:
        if service is None or service == self.issuer.service:
            return None
        tokens_refused.labels("unknown_service").inc()
        body = {"errors": [{"code": "INVALID_REQUEST", "message": f"unknown service {service!r}"}],
                "error": "invalid_request", "error_description": "unknown service"}
        return JSONResponse(body, status_code=400)

    def _unauthorized(self, message: str) -> Response:
        body = {"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": None}]}
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": self.challenge})

    def _oauth_error(self, status: int, error: str, description: str) -> Response:
        body = {"error": error, "error_description": description,
                "errors": [{"code": "UNAUTHORIZED" if status == 401 else "INVALID_REQUEST",
                            "message": description}]}
        headers = {"WWW-Authenticate": self.challenge} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)
