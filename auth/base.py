"""What the registry asks of an access controller, and the anonymous controller used when auth is off.

The registry maps every request to the accesses it needs (``Access``) and asks the configured
controller for a ``Grant``; a controller refuses with ``AuthFailure``, which the registry turns into
the spec's JSON error with the challenge header.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from starlette.requests import Request

    from auth.credentials import Scope

Origin = Callable[[], str]
EVERY_ACTION = frozenset({"pull", "push", "delete", "*"})
# A longer name is refused at the door, before the brake or a log line keeps it: 3,000 failed logins
# with 40 KB names grew the process by 126 MB (brake keys) and its log by 23.5 MB.
MAX_USER_NAME = 256


def plausible_user(name: str) -> bool:
    """Whether ``name`` can be a user's at all (not empty, not longer than ``MAX_USER_NAME``)."""
    return 0 < len(name) <= MAX_USER_NAME


def peer_address(request: Request) -> str:
    """The connection's peer (the registry passes its own function, which honours trusted proxies)."""
    return request.client.host if request.client else ""


def no_origin() -> str:
    return ""


@dataclass(frozen=True, slots=True)
class Access:
    """One resource action, as in a token scope ``repository:team/app:pull``."""

    type: str  # "repository" or "registry"
    name: str  # repository name, or "catalog"
    action: str  # "pull", "push", "delete" or "*"

    @property
    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


class AuthFailure(Exception):
    """Refusal: status 401 (UNAUTHORIZED, with a challenge) or 403 (DENIED)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        challenge: str | None = None,
        detail: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge
        self.detail = detail
        self.headers = headers or {}


@dataclass(slots=True)
class Grant:
    """Who the caller is and what it may do beyond what it asked for (used to filter the catalog)."""

    subject: str | None = None
    accesses: frozenset[Access] = field(default_factory=frozenset)
    everything: bool = False
    scope: Scope | None = None  # the access token's limits when the caller used one

    def may(self, type_: str, name: str, action: str) -> bool:
        if self.everything:
            return True
        return any(
            a.type == type_ and a.name == name and a.action in (action, "*") for a in self.accesses
        )


class AccessController(Protocol):
    """Decides requests; implementations live in this package (htpasswd, token)."""

    async def authorize(self, headers: Mapping[str, str], wanted: list[Access], origin: Origin = no_origin,
                        address: str = "") -> Grant:
        """Grant every access in ``wanted`` or raise AuthFailure. ``wanted`` may be empty (GET /v2/).

        ``origin()`` gives ``scheme://host`` as the client reached the registry (proxies and
        ``http.host`` taken into account), for challenges that point back at this server; it is a
        callable because most requests never need it.  ``address`` is the client's (behind trusted
        proxies, the one they name), for the brute-force brake."""
        ...

    async def may_list(self, grant: Grant, repository: str) -> bool:
        """Whether the catalog may show ``repository`` to this caller."""
        ...

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        """What ``subject`` (None: anonymous) may do on ``repository`` by this controller's rules, for
        callers identified another way than a /v2 credential (web UI sessions, /v1 search)."""
        ...

    def is_admin(self, subject: str | None) -> bool:
        """Whether ``subject`` may administer the registry (replication), for web UI sessions."""
    async def refresh(self) -> None:
        """Confirm the rules current before synchronous ``actions`` (the database's policy; a no-op for
        the file's); raises DatabaseUnavailable when they cannot be."""
        ...


class AllowAll:
    """No authentication: everything is allowed (Distribution with no ``auth`` section)."""

    async def authorize(self, headers: Mapping[str, str], wanted: list[Access], origin: Origin = no_origin,
                        address: str = "") -> Grant:
        return Grant(everything=True)

    async def may_list(self, grant: Grant, repository: str) -> bool:
        return True

    def actions(self, subject: str | None, repository: str) -> frozenset[str]:
        return EVERY_ACTION

    def is_admin(self, subject: str | None) -> bool:
        return True
    async def refresh(self) -> None:
        return None
