"""Callers who do not carry a /v2 credential on every request: web UI sessions and ``/v1/search``.

They are checked against the same users (the htpasswd file of ``auth.htpasswd``, or of the built-in
token server) and get exactly the rights the access controller gives the same user on /v2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auth.base import AccessController, AllowAll, AuthFailure
from auth.basic import EMPTY_BASIC, BasicController, basic_credentials
from auth.brake import LoginBrake, TooManyAttempts, build_brake, check_password, retry_after
from auth.challenge import header, unauthorized
from auth.htpasswd import Htpasswd
from auth.settings import AuthSettings
from configkit import existing_file


class Login:
    def __init__(self, access: AccessController, users: Htpasswd | None, realm: str = "moorage",
                 brake: LoginBrake | None = None) -> None:
        self.access = access
        self.users = users
        self.brake = brake
        self.open = isinstance(access, AllowAll)  # no auth configured: everyone may do everything
        self.challenge = header("Basic", realm=realm)

    @property
    def enabled(self) -> bool:
        """Whether users can log in at all (a users file is configured)."""
        return self.users is not None

    async def check(self, user: str, password: str, address: str = "") -> bool:
        """Raises TooManyAttempts while the brute-force brake holds ``user`` at ``address``."""
        return self.users is not None and bool(user) and await check_password(
            self.users, self.brake, user, password, address)

    def stamp(self, user: str) -> str | None:
        """Changes when the user's password does (None once removed): sessions bound to it end then."""
        return self.users.tag(user) if self.users is not None else None

    async def identify(self, headers: Mapping[str, str], address: str = "") -> str | None:
        """The caller of a request: Basic against the users file, Bearer as the controller verifies it,
        None for anonymous; bad credentials raise AuthFailure (401 with a Basic challenge, 429 while
        the brute-force brake holds the user at ``address``)."""
        authorization = (headers.get("authorization") or "").strip()
        if not authorization or authorization == EMPTY_BASIC or self.open:
            return None
        scheme = authorization.partition(" ")[0].lower()
        if scheme == "bearer":
            return (await self.access.authorize(headers, [])).subject
        credentials = basic_credentials(authorization)
        try:
            valid = credentials is not None and await self.check(*credentials, address)
        except TooManyAttempts as e:
            raise AuthFailure(429, "TOOMANYREQUESTS", str(e), headers=retry_after(e)) from None
        if not valid or credentials is None:
            raise unauthorized(self.challenge, [], "invalid username or password")
        return credentials[0]

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        return self.access.actions(subject, repository)


def build_login(auth: AuthSettings | Mapping[str, Any], access: AccessController) -> Login:
    """The users of ``auth.htpasswd`` (the controller's own file) or of ``auth.tokenserver``."""
    settings = AuthSettings.parse(auth)
    if isinstance(access, BasicController) and settings.htpasswd:
        return Login(access, access.htpasswd, settings.htpasswd.realm, access.brake)  # one count for /v2 and the UI
    if settings.tokenserver and settings.tokenserver.htpasswd:
        path = existing_file(settings.tokenserver.htpasswd, "auth.tokenserver.htpasswd")
        return Login(access, Htpasswd(path), brake=build_brake(settings.brake))
    return Login(access, None)
