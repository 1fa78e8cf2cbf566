"""HTTP Basic against the credential chain (htpasswd, a directory), with the access rules applied on top.

Unlike Distribution's htpasswd mode, rules can let anonymous callers pull or restrict pushes.
``GET /v2/`` (no accesses) still needs valid credentials, so ``docker login`` checks the password.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping

from auth.base import Access, AuthFailure, Grant, Origin, no_origin, plausible_user
from auth.brake import TooManyAttempts, retry_after
from auth.challenge import denied, header, unauthorized
from auth.credentials import CredentialRefused, Credentials, Identity, Scope, SourceUnavailable
from auth.policy import DatabasePolicy
from auth.rules import AccessRules

log = logging.getLogger("moorage.auth")
EMPTY_BASIC = "Basic Og=="  # ":", as containers/image sends it before it has credentials: anonymous


def basic_credentials(value: str | None) -> tuple[str, str] | None:
    """``user, password`` from an ``Authorization: Basic`` value; None when absent, not Basic, or the user
    name is empty or implausibly long."""
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and plausible_user(user) else None


def unavailable(error: SourceUnavailable) -> AuthFailure:
    """503 for a credential source that cannot answer: a 401 would make docker drop good credentials."""
    return AuthFailure(503, "UNAVAILABLE", str(error), headers=retry_after(error.retry_after))


async def verify_basic(credentials: Credentials, challenge: str, user: str, password: str, address: str,
                       wanted: list[Access]) -> Identity:
    """The identity of Basic credentials, or the AuthFailure to answer (401, 429 braked, 503 unavailable)."""
    try:
        identity = await credentials.verify(user, password, address)
    except TooManyAttempts as e:
        log.warning("basic auth braked: user %r from %s", user, address)
        raise AuthFailure(429, "TOOMANYREQUESTS", str(e), headers=retry_after(e)) from None
    except SourceUnavailable as e:
        log.warning("basic auth for user %r unavailable: %s", user, e)
        raise unavailable(e) from None
    except CredentialRefused as e:
        log.info("basic auth refused for user %r: %s", user, e)
        raise unauthorized(challenge, wanted, str(e)) from None
    if identity is None:
        log.info("basic auth refused: invalid credentials for user %r", user)
        raise unauthorized(challenge, wanted, "invalid username or password")
    return identity


class BasicController:
    def __init__(self, realm: str, credentials: Credentials, rules: AccessRules | DatabasePolicy) -> None:
        self.challenge = header("Basic", realm=realm)
        self.credentials = credentials
        self.rules = rules

    async def authorize(self, headers: Mapping[str, str], wanted: list[Access], origin: Origin = no_origin,
                        address: str = "") -> Grant:
        authorization = (headers.get("authorization") or "").strip()
        identity: Identity | None = None
        if authorization and authorization != EMPTY_BASIC:
            credentials = basic_credentials(authorization)
            if credentials is None:
                raise unauthorized(self.challenge, wanted, "invalid username or password")
            identity = await verify_basic(self.credentials, self.challenge, *credentials, address, wanted)
        user = identity.name if identity is not None else None
        scope = identity.scope if identity is not None else None
        if user is None and not wanted:
            raise unauthorized(self.challenge, wanted)
        await self.rules.refresh()  # the database's policy: confirmed current (no query while its feed runs)
        missing = [a for a in wanted if a.action not in scoped(self.rules, user, scope, a.type, a.name)]
        if missing:
            raise unauthorized(self.challenge, missing) if user is None else denied(missing)
        everything = scope is None and self.rules.is_admin(user)
        return Grant(subject=user, accesses=frozenset(wanted), everything=everything, scope=scope)

    async def may_list(self, grant: Grant, repository: str) -> bool:
        return grant.everything or "pull" in scoped(self.rules, grant.subject, grant.scope, "repository", repository)

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        return self.rules.actions(subject, "repository", repository)

    def is_admin(self, subject: str | None) -> bool:
        return self.rules.is_admin(subject)

    async def refresh(self) -> None:
        await self.rules.refresh()


def scoped(rules: AccessRules | DatabasePolicy, user: str | None, scope: Scope | None, type_: str, name: str
           ) -> frozenset[str]:
    """What the rules let ``user`` do on a resource, cut down to an access token's scope. Of the
    registry's own resources a token reaches only the catalog (itself cut to the scope by ``may_list``):
    an admin's token for pulls must not read metrics or run replication."""
    allowed = rules.actions(user, type_, name)
    if scope is None:
        return allowed
    if type_ != "repository":
        return allowed if (type_, name) == ("registry", "catalog") else frozenset()
    return scope.narrow(allowed, name)
