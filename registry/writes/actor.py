"""Who makes a change: a small value the write path, its policies and the events carry, never a request.

``kind`` says what acts (``user``, ``anonymous``, the registry's own ``mirror`` filling its cache, and
what other parts add: ``robot``, ``token``, ``replication``, ``gc``); ``name`` who, when known;
``address`` the client's address behind trusted proxies; ``grant`` what the caller was found to be
allowed (the write path checks every write against it); ``request`` the HTTP request that carried the
change, when one did (its id, and what notifications and the audit trail report of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auth.base import Grant

USER = "user"
ANONYMOUS = "anonymous"
MIRROR = "mirror"  # the pull-through cache storing what an upstream served


@dataclass(eq=False, slots=True)
class RequestInfo:
    """The HTTP request a change came in, as events report it (Distribution's ``request`` record).

    ``held`` keeps the request's events until its answer is sent (then ``route`` and ``status`` are
    known and the events go out, off the answer's path); None once they went out.
    """

    id: str
    address: str
    method: str
    host: str = ""
    scheme: str = "http"
    user_agent: str = ""
    route: str = ""
    status: int | None = None
    held: list[Any] | None = field(default_factory=list)  # RepositoryEvents (events.py imports this module)


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str
    name: str | None = None
    address: str = ""
    grant: Grant | None = None  # None: the caller is the registry itself, or was authorized otherwise
    request: RequestInfo | None = None

    @property
    def who(self) -> str:
        """A name for logs and records: the name, else the kind."""
        return self.name or self.kind


def from_grant(grant: Grant, request: RequestInfo | None = None) -> Actor:
    """The actor of a request that the access controller granted."""
    return Actor(USER if grant.subject else ANONYMOUS, grant.subject, request.address if request else "", grant,
                 request)


MIRROR_ACTOR = Actor(MIRROR)
