"""Who a user name and password belong to: the one chain of credential sources that every login path
asks (Basic on /v2, the token server, the web UI's form, /v1/search), behind one brute-force brake.

Sources are asked in order. A source that knows the user decides: it accepts (an ``Identity``) or
refuses, and a refusal is not passed on, so a directory can never shadow a local account with another
password. A source that does not know the user passes to the next. A source that cannot answer
(a directory that is down) raises ``SourceUnavailable``: the caller answers 503, not 401, because a
401 makes docker forget stored credentials that are still right. Local sources come first, so local
users never wait on a directory.
"""

from __future__ import annotations

import enum
import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from auth.base import plausible_user
from auth.brake import LoginBrake, TooManyAttempts
from auth.htpasswd import Htpasswd
from auth.rules import glob_regex
from auth.settings import REPOSITORY_ACTIONS


@dataclass(frozen=True, slots=True)
class Scope:
    """The most an access token lets its bearer do: ``actions``, only on repositories matching
    ``repositories`` (globs as in the rules; None: any). A user's token never does more than the user
    may do at the time (``narrow``); a robot's scope is all the robot may do."""

    actions: frozenset[str]
    repositories: tuple[str, ...] | None = None
    token: str = ""  # the token's id: refresh tokens issued to it stay bound to it
    robot: bool = False

    def covers(self, repository: str) -> bool:
        return self.repositories is None or any(
            (rx := glob_regex(p, "")) is not None and rx.fullmatch(repository) for p in self.repositories)

    def narrow(self, allowed: frozenset[str], repository: str) -> frozenset[str]:
        """``allowed`` (what the owner may do on ``repository``) cut down to this scope."""
        if not self.covers(repository):
            return frozenset()
        base = (REPOSITORY_ACTIONS | {"*"}) if self.robot else allowed
        kept = {a for a in base if a in self.actions}
        if "*" in base and self.actions >= REPOSITORY_ACTIONS:
            kept.add("*")
        return frozenset(kept)

    def claim(self) -> dict[str, Any]:
        """The scope as the token server writes it into the Bearer tokens it issues for an access token,
        so that the registry lists no more than the scope (the token's id stays out: it names no secret
        but is of no use to the registry)."""
        return {"actions": sorted(self.actions),
                "repositories": None if self.repositories is None else list(self.repositories),
                "robot": self.robot}

    @classmethod
    def from_claim(cls, raw: object) -> Scope:
        """The inverse of ``claim``; ValueError for anything the token server does not write."""
        if not isinstance(raw, dict) or set(raw) != {"actions", "repositories", "robot"}:
            raise ValueError("the token scope claim needs exactly actions, repositories and robot")
        actions, repositories, robot = raw["actions"], raw["repositories"], raw["robot"]
        if not isinstance(actions, list) or not all(a in REPOSITORY_ACTIONS for a in actions):
            raise ValueError("the token scope's actions are not a list of pull, push and delete")
        if repositories is not None and not (
                isinstance(repositories, list) and all(isinstance(r, str) for r in repositories)):
            raise ValueError("the token scope's repositories are not a list of strings")
        if not isinstance(robot, bool):
            raise ValueError("the token scope's robot flag is not a boolean")
        return cls(frozenset(actions), None if repositories is None else tuple(repositories), robot=robot)


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller whose password (or access token) a source accepted."""

    name: str  # the registry's name for them (a directory's spelling, lower-cased)
    source: str  # the kind of source that accepted it: "htpasswd", "ldap", "token", ...
    teams: frozenset[str] = frozenset()  # directory groups mapped to team names
    email: str | None = None
    scope: Scope | None = None  # an access token's limits (None: the user's full rights)
    subject: str | None = None  # the provider's stable id (OpenID issuer and sub), when there is one


class CredentialRefused(Exception):
    """Credentials a source knows and refuses for a reason the caller should hear (an expired token)."""


class Verdict(enum.Enum):
    UNKNOWN = "unknown"  # the source does not know this user: ask the next one
    REFUSED = "refused"  # the source knows the user and the password is wrong: stop


class SourceUnavailable(Exception):
    """A source that has to decide cannot be reached; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialSource(Protocol):
    kind: str

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        """Accept, refuse or pass; raises SourceUnavailable when it cannot tell, CredentialRefused to
        refuse with a reason. ``address``: the client's (access tokens record their last use)."""
        ...

    async def current(self, user: str) -> Identity | None:
        """The user as the source knows them now, without a password (None: unknown here), for callers
        that logged in earlier: refresh tokens and web UI sessions. Raises SourceUnavailable."""
        ...

    def stamp(self, user: str) -> str | None:
        """A value that changes when the user's password does (None: this source does not know them):
        web UI sessions and refresh tokens bound to it end then."""
        ...


class HtpasswdSource:
    """The users of an htpasswd file. An unknown user costs the same bcrypt as a known one (the
    file's dummy hash), so the chain's timing does not tell local names from others."""

    kind = "htpasswd"

    def __init__(self, htpasswd: Htpasswd) -> None:
        self.htpasswd = htpasswd

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        if await self.htpasswd.check(user, password):
            return Identity(user, self.kind)
        return Verdict.REFUSED if self.htpasswd.tag(user) is not None else Verdict.UNKNOWN

    async def current(self, user: str) -> Identity | None:
        return Identity(user, self.kind) if self.htpasswd.tag(user) is not None else None

    def stamp(self, user: str) -> str | None:
        return self.htpasswd.tag(user)


class Memberships:
    """The teams each user was last seen in by a source (directory groups), for the rules' ``team:NAME``.

    Updated by every verified login and every ``current`` check, so a group change shows within the
    directory's cache TTL; kept in this process's memory, at most ``entries`` users (the least recently
    seen go first: they are looked up again at their next login)."""

    def __init__(self, entries: int = 100_000) -> None:
        self.entries = entries
        self._teams: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()
        self.recorded: Callable[[str], frozenset[str]] | None = None  # teams kept in the database

    def record(self, identity: Identity) -> None:
        with self._lock:
            self._teams.pop(identity.name, None)
            self._teams[identity.name] = identity.teams
            while len(self._teams) > self.entries:
                self._teams.popitem(last=False)

    def forget(self, user: str) -> None:
        with self._lock:
            self._teams.pop(user, None)

    def teams(self, user: str) -> frozenset[str]:
        """As seen by this process's latest check of the user, else as recorded at their latest login
        (on any replica: auth.accounts)."""
        teams = self._teams.get(user)
        if teams is not None:
            return teams
        return self.recorded(user) if self.recorded is not None else frozenset()


class Credentials:
    """The chain, with the brake every login path shares (one failure count per user and address)."""

    def __init__(self, sources: Sequence[CredentialSource], brake: LoginBrake | None = None) -> None:
        self.sources = tuple(sources)
        self.brake = brake
        self.memberships = Memberships()
        self.arrivals: list[Callable[[Identity], Awaitable[None]]] = []  # told of every login

    @property
    def enabled(self) -> bool:
        """Whether anyone can log in at all."""
        return bool(self.sources)

    async def verify(self, user: str, password: str, address: str = "") -> Identity | None:
        """The identity ``user:password`` proves, or None. Raises TooManyAttempts (without checking)
        while the brake holds ``user`` at ``address``, and SourceUnavailable (not counted as a failure)."""
        if not plausible_user(user):
            return None  # never counted, checked or kept: no user has such a name
        key = user.lower()  # directories match names case-insensitively: so does the brake
        if self.brake is not None:
            wait = self.brake.wait(key, address)
            if wait > 0:
                raise TooManyAttempts(wait)
        for source in self.sources:
            try:
                verdict = await source.verify(user, password, address)
            except CredentialRefused:
                if self.brake is not None:
                    self.brake.failed(key, address)
                raise
            if isinstance(verdict, Identity):
                if self.brake is not None:
                    self.brake.succeeded(key, address)
                await self.arrived(verdict)
                return verdict
            if verdict is Verdict.REFUSED:
                break
        if self.brake is not None:
            self.brake.failed(key, address)
        return None

    async def arrived(self, identity: Identity) -> None:
        """A login (password, single sign-on or access token): a password's or a sign-on's teams recorded,
        the listeners told (a directory's users get a database user; a token's owner's teams as recorded at
        their latest login are read, which this process may never have seen)."""
        if identity.scope is None:
            self.memberships.record(identity)
        for arrival in self.arrivals:
            await arrival(identity)

    async def current(self, user: str) -> Identity | None:
        """The user as the first source that knows them sees them now; None when none does."""
        for source in self.sources:
            identity = await source.current(user)
            if identity is not None:
                self.memberships.record(identity)
                return identity
        self.memberships.forget(user)
        return None

    async def owner(self, user: str) -> str | None:
        """The kind of the first source that knows ``user`` (``htpasswd``, ``ldap``, ...), or None: a
        single sign-on must not take over a name that logs in another way."""
        identity = await self.current(user)
        return identity.source if identity is not None else None

    async def token_identity(self, token_id: str) -> Identity | None:
        """The identity an access token stands for now (refresh tokens bound to it); None: revoked."""
        for source in self.sources:
            by_id = getattr(source, "by_id", None)
            if by_id is not None:
                identity: Identity | None = await by_id(token_id)
                if identity is not None:
                    await self.arrived(identity)
                return identity
        return None

    def add_first(self, source: CredentialSource) -> None:
        """A source asked before the others (access tokens: they claim only passwords of their form)."""
        self.sources = (source, *self.sources)

    async def close(self) -> None:
        """Let go of the sources' threads and connections (the directory's pool, pending token uses)."""
        for source in self.sources:
            close = getattr(source, "close", None)
            if close is not None and inspect.isawaitable(result := close()):
                await result

    def stamp(self, user: str) -> str | None:
        for source in self.sources:
            stamp = source.stamp(user)
            if stamp is not None:
                return stamp
        return None
