"""HTTP Basic against an htpasswd file, with the access rules applied on top.

Unlike Distribution's htpasswd mode, rules can let anonymous callers pull or restrict pushes.
``GET /v2/`` (no accesses) still needs valid credentials, so ``docker login`` checks the password.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping

from auth.base import Access, AuthFailure, Grant, Origin, no_origin
from auth.brake import LoginBrake, TooManyAttempts, check_password, retry_after
from auth.challenge import denied, header, unauthorized
from auth.htpasswd import Htpasswd
from auth.rules import AccessRules

log = logging.getLogger("moorage.auth")
EMPTY_BASIC = "Basic Og=="  # ":", as containers/image sends it before it has credentials: anonymous


def basic_credentials(value: str | None) -> tuple[str, str] | None:
    """``user, password`` from an ``Authorization: Basic`` value; None when absent or not Basic."""
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
    return (user, password) if sep and user else None


class BasicController:
    def __init__(self, realm: str, htpasswd: Htpasswd, rules: AccessRules, brake: LoginBrake | None = None) -> None:
        self.challenge = header("Basic", realm=realm)
        self.htpasswd = htpasswd
        self.rules = rules
        self.brake = brake

    async def authorize(self, headers: Mapping[str, str], wanted: list[Access], origin: Origin = no_origin,
                        address: str = "") -> Grant:
        authorization = (headers.get("authorization") or "").strip()
        user: str | None = None
        if authorization and authorization != EMPTY_BASIC:
            credentials = basic_credentials(authorization)
            try:
                valid = credentials is not None and await check_password(
                    self.htpasswd, self.brake, *credentials, address)
            except TooManyAttempts as e:
                log.warning("basic auth braked: user %r from %s", credentials and credentials[0], address)
                raise AuthFailure(429, "TOOMANYREQUESTS", str(e), headers=retry_after(e)) from None
            if not valid:
                log.info("basic auth refused: invalid credentials for user %r", credentials and credentials[0])
                raise unauthorized(self.challenge, wanted, "invalid username or password")
            user = credentials[0]
        if user is None and not wanted:
            raise unauthorized(self.challenge, wanted)
        missing = [a for a in wanted if not self._allowed(user, a)]
        if missing:
            raise unauthorized(self.challenge, missing) if user is None else denied(missing)
        return Grant(subject=user, accesses=frozenset(wanted), everything=self.rules.is_admin(user))

    async def may_list(self, grant: Grant, repository: str) -> bool:
        return grant.everything or "pull" in self.rules.actions(grant.subject, "repository", repository)

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        return self.rules.actions(subject, "repository", repository)

    def _allowed(self, user: str | None, access: Access) -> bool:
        return access.action in self.rules.actions(user, access.type, access.name)
