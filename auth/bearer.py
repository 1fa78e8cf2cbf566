"""Bearer tokens (Distribution's ``auth.token``): every request carries a JWT whose ``access``
claim must cover what the request needs; otherwise 401 with a challenge naming the scope."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from auth.base import Access, AuthFailure, Grant, Origin, no_origin
from auth.basic import scoped
from auth.challenge import header, unauthorized
from auth.policy import DatabasePolicy
from auth.rules import AccessRules
from auth.scopes import format_scopes
from auth.verifier import TokenError, TokenVerifier

log = logging.getLogger("moorage.auth")


class BearerController:
    def __init__(
        self, realm: str | None, service: str, verifier: TokenVerifier,
        rules: AccessRules | DatabasePolicy | None = None, autoredirect_path: str | None = None,
    ) -> None:
        """``autoredirect_path``: the realm is the request's origin + this path (``realm`` may then be None).
        With the database's policy a token grants no more than its subject may do now: a revocation holds
        within seconds, not when the token expires."""
        self.realm, self.service = realm, service
        self.verifier = verifier
        self.rules = rules
        self.autoredirect_path = autoredirect_path

    async def authorize(self, headers: Mapping[str, str], wanted: list[Access], origin: Origin = no_origin,
                        address: str = "") -> Grant:
        scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse(origin, wanted, None)
        try:
            verified = self.verifier.verify(token)
        except TokenError as e:
            log.info("bearer token refused: %s", e)
            raise self._refuse(origin, wanted, "invalid_token") from None
        missing = [a for a in wanted if not covers(verified.accesses, a)]
        if not missing and isinstance(self.rules, DatabasePolicy):
            await self.rules.refresh()
            missing = [a for a in wanted
                       if a.action not in scoped(self.rules, verified.subject, verified.scope, a.type, a.name)]
        if missing:
            raise self._refuse(origin, wanted, "insufficient_scope")
        return Grant(subject=verified.subject, accesses=verified.accesses, scope=verified.scope)

    async def may_list(self, grant: Grant, repository: str) -> bool:
        """With local rules (built-in token server) the catalog shows what the subject may pull, cut
        to the access token's scope when they logged in with one."""
        if self.rules is None:
            return True
        return "pull" in scoped(self.rules, grant.subject, grant.scope, "repository", repository)

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        """The rules the built-in token server grants by; nothing when tokens come from elsewhere (their
        issuer's rules are unknown here)."""
        if self.rules is None:
            return frozenset()
        return self.rules.actions(subject, "repository", repository)

    def is_admin(self, subject: str | None) -> bool:
        return self.rules is not None and self.rules.is_admin(subject)
    async def refresh(self) -> None:
        if self.rules is not None:
            await self.rules.refresh()

    def _refuse(self, origin: Origin, wanted: list[Access], error: str | None) -> AuthFailure:
        realm = self.realm
        if self.autoredirect_path is not None:
            base = origin()  # the registry always knows it; a caller without one gets at least the path
            if base or realm is None:
                realm = f"{base}{self.autoredirect_path}"
        challenge = header(
            "Bearer", realm=realm, service=self.service, scope=format_scopes(wanted) or None, error=error
        )
        return unauthorized(challenge, wanted)


def covers(granted: frozenset[Access], wanted: Access) -> bool:
    return wanted in granted or Access(wanted.type, wanted.name, "*") in granted
