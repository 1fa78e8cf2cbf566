"""Callers who do not carry a /v2 credential on every request: web UI sessions and ``/v1/search``.

They are checked against the same credential chain as /v2 and the token server (auth.credentials),
and get exactly the rights the access controller gives the same user on /v2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from auth.base import AccessController, AllowAll, Grant
from auth.basic import EMPTY_BASIC, basic_credentials, verify_basic
from auth.challenge import header, unauthorized
from auth.credentials import Credentials, Identity
from auth.factory import build_oidc
from auth.policy import DatabasePolicy, Holders
from auth.settings import AuthSettings

if TYPE_CHECKING:
    from auth.oidc import OpenIDConnect


class Login:
    def __init__(self, access: AccessController, credentials: Credentials, realm: str = "moorage",
                 oidc: OpenIDConnect | None = None) -> None:
        """``oidc``: the web UI's single sign-on, when configured."""
        self.access = access
        self.credentials = credentials
        self.oidc = oidc
        self.open = isinstance(access, AllowAll)  # no auth configured: everyone may do everything
        self.challenge = header("Basic", realm=realm)

    @property
    def enabled(self) -> bool:
        """Whether users can log in at all (some credential source is configured)."""
        return self.credentials.enabled

    async def check(self, user: str, password: str, address: str = "") -> Identity | None:
        """Raises TooManyAttempts while the brute-force brake holds ``user`` at ``address``, and
        SourceUnavailable while a directory that has to decide cannot be reached."""
        return await self.credentials.verify(user, password, address)

    async def current(self, user: str) -> Identity | None:
        """The logged-in ``user`` as their source sees them now (None: gone), their teams refreshed;
        raises SourceUnavailable."""
        return await self.credentials.current(user)

    async def owner(self, user: str) -> str | None:
        return await self.credentials.owner(user)

    def stamp(self, user: str) -> str | None:
        """Changes when the user's password does (None once removed): sessions bound to it end then."""
        return self.credentials.stamp(user)

    async def identify(self, headers: Mapping[str, str], address: str = "") -> Grant:
        """The caller of a request and the access token's scope if they used one: Basic against the
        credential chain, Bearer as the controller verifies it, no subject for anonymous; bad
        credentials raise AuthFailure (401 with a Basic challenge, 429 while the brute-force brake holds
        the user at ``address``, 503 while a directory is down)."""
        authorization = (headers.get("authorization") or "").strip()
        if not authorization or authorization == EMPTY_BASIC or self.open:
            return Grant()
        scheme = authorization.partition(" ")[0].lower()
        if scheme == "bearer":
            grant = await self.access.authorize(headers, [], address=address)
            return Grant(subject=grant.subject, scope=grant.scope)
        credentials = basic_credentials(authorization)
        if credentials is None:
            raise unauthorized(self.challenge, [], "invalid username or password")
        identity = await verify_basic(self.credentials, self.challenge, *credentials, address, [])
        return Grant(subject=identity.name, scope=identity.scope)

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        """Call ``refresh`` first in each request (the database's policy is then confirmed current)."""
        return self.access.actions(subject, repository)

    def may_pull(self, caller: Grant, repository: str) -> bool:
        """Whether ``caller`` (from ``identify``, or a web UI session's user) may pull ``repository``:
        its subject's rights cut to the access token's scope."""
        allowed = self.access.actions(caller.subject, repository)
        if caller.scope is not None:
            allowed = caller.scope.narrow(allowed, repository)
        return "pull" in allowed

    def holders(self, repository: str, action: str) -> Holders | None:
        """Who may do ``action`` on ``repository`` by the database's policy (None without one)."""
        rules = getattr(self.access, "rules", None)
        return rules.holders(repository, action) if isinstance(rules, DatabasePolicy) else None

    def is_admin(self, subject: str | None) -> bool:
        """An admin of the access rules (everyone when no auth is configured)."""
        return self.access.is_admin(subject)
    async def refresh(self) -> None:
        """Confirm the access rules current (raises DatabaseUnavailable when the database's cannot be)."""
        await self.access.refresh()

    def teams(self, user: str) -> frozenset[str]:
        """The teams a directory last reported for ``user`` (the database's own teams are the policy's)."""
        return self.credentials.memberships.teams(user)

    async def close(self) -> None:
        await self.credentials.close()
        if self.oidc is not None:
            await self.oidc.close()


def build_login(auth: AuthSettings | Mapping[str, Any], access: AccessController,
                credentials: Credentials) -> Login:
    """Web UI and /v1/search logins over the same chain (and brake) as /v2 and the token server."""
    settings = AuthSettings.parse(auth)
    realm = settings.htpasswd.realm if settings.htpasswd else "moorage"
    return Login(access, credentials, realm, build_oidc(settings, credentials))
