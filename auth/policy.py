"""Who may do what by the database: an in-memory snapshot of users, teams and namespaces, and the
policy that puts the config file's rules in front of it.

**The model.**  A namespace is a repository path prefix; it covers the repository of its own path and
every one below it (``payments`` covers ``payments/api`` and ``payments/api/worker``), and the
*closest* (longest) namespace covering a repository decides: its members' roles, its visibility (a
public namespace lets anyone pull) and its settings.  A user's role there is the highest of their own
membership and their teams' (the database's teams, and the teams a directory reports for them).  A
repository that no namespace covers and whose first component is a user's name is that user's own
(personal) namespace: they are its owner.  Database admins may do everything.

**Precedence** (``DatabasePolicy``): admins of the file (``auth.access.admins``) and of the database
may do everything; otherwise the first ``auth.access.rules`` entry that matches the repository and the
caller decides, exactly as without a database, so the file holds the policy an operator wants fixed;
where no rule matches, the database decides.

**Freshness.**  Decisions read a snapshot (one transaction, reloaded when the change feed moves), never
the database: a warm pull costs no query.  Every decision rests on a snapshot confirmed current within
``MAX_AGE`` seconds; the feed's poller confirms it twice a second, and when it cannot, the decision
checks itself (bounded by ``database.timeout``) or answers 503.  So a change acknowledged at T is
enforced on every replica from T + 2 s at the latest, and a revoked user never pushes after that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from auth import roles
from auth.rules import COMPONENT_RE, AccessRules, valid_repository
from storage.database import Cached, DatabaseUnavailable
from storage.database.records import USER, NamespaceRecord, PolicyData, UserRecord

if TYPE_CHECKING:
    from storage.database import Database

MAX_AGE = 1.5  # seconds a decision's snapshot may be unconfirmed (the poll runs every 0.5 s)
STALE = 3.0  # a synchronous caller that could not refresh gets 503 past this

TeamsOf = Callable[[str], frozenset[str]]


def no_teams(user: str) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace as decisions use it: its record and its members' roles by name."""

    record: NamespaceRecord
    users: dict[str, str]
    teams: dict[str, str]

    @property
    def path(self) -> str:
        return self.record.path


@dataclass(frozen=True, slots=True)
class Holders:
    """Who may do an action on a repository by the database, for pages that say so: the deciding
    ``namespace`` (None: none covers it), its ``users`` and ``teams`` as ``(name, role)``, and whether
    ``anyone`` may (a public namespace's pulls).  Admins always may; file ``rules`` come first."""

    namespace: str | None
    users: tuple[tuple[str, str], ...]
    teams: tuple[tuple[str, str], ...]
    anyone: bool
    rules: bool = False  # some rule of the config file may decide for this repository first


class PolicySnapshot:
    def __init__(self, data: PolicyData) -> None:
        self.users = {u.name: u for u in data.users}
        self.teams = data.teams
        memberships: dict[str, set[str]] = {}
        for team, members in data.team_members.items():
            for user in members:
                memberships.setdefault(user, set()).add(team)
        self.memberships = {user: frozenset(teams) for user, teams in memberships.items()}
        self.namespaces = {ns.path: Namespace(ns, {}, {}) for ns in data.namespaces}
        for member in data.members:
            ns = self.namespaces[member.namespace]
            (ns.users if member.kind == USER else ns.teams)[member.name] = member.role
        self.admins = frozenset(u.name for u in data.users if u.admin and not u.disabled)

    def user(self, name: str | None) -> UserRecord | None:
        """An enabled database user."""
        found = self.users.get(name) if name is not None else None
        return found if found is not None and not found.disabled else None

    def stamp(self, name: str) -> str | None:
        """Changes when the user's password changes or they are disabled; None when they cannot log in."""
        found = self.user(name)
        return found.credentials_changed.isoformat() if found is not None else None

    def is_admin(self, user: str | None) -> bool:
        return user is not None and user in self.admins

    def closest(self, path: str) -> Namespace | None:
        """The longest namespace covering ``path`` (a repository name or a namespace path)."""
        candidate = path
        while True:
            found = self.namespaces.get(candidate)
            if found is not None:
                return found
            candidate, slash, _ = candidate.rpartition("/")
            if not slash:
                return None

    def personal_owner(self, path: str) -> str | None:
        """The user whose personal namespace covers ``path`` when no namespace does."""
        first = path.partition("/")[0]
        return first if self.user(first) is not None and COMPONENT_RE.fullmatch(first) else None

    def teams_of(self, user: str, extra: frozenset[str] = frozenset()) -> frozenset[str]:
        return self.memberships.get(user, frozenset()) | extra

    def role(self, user: str | None, path: str, extra_teams: frozenset[str] = frozenset()) -> str | None:
        """The role ``user`` holds on ``path`` by its closest namespace (None: none)."""
        if user is None or (user in self.users and self.user(user) is None):
            return None  # anonymous, or a disabled database user
        ns = self.closest(path)
        if ns is None:
            return roles.OWNER if self.personal_owner(path) == user else None
        return self.role_in(ns, user, extra_teams)

    def role_in(self, ns: Namespace, user: str, extra_teams: frozenset[str] = frozenset()) -> str | None:
        if ns.record.personal == user:
            return roles.OWNER
        held = [ns.users.get(user)] + [ns.teams.get(team) for team in self.teams_of(user, extra_teams)]
        return roles.highest(held)

    def actions(self, user: str | None, repository: str, extra_teams: frozenset[str] = frozenset()
                ) -> frozenset[str]:
        if self.is_admin(user):
            return roles.EVERYTHING
        granted = roles.ACTIONS.get(self.role(user, repository, extra_teams) or "", frozenset())
        ns = self.closest(repository)
        if ns is not None and ns.record.public and (user is None or user not in self.users or self.user(user)):
            return granted | {"pull"}
        return granted

    def namespace_setting(self, repository: str, name: str) -> tuple[str, object] | None:
        """A namespace setting (``quota``, ``retention``, ``immutable_tags``) of the closest namespace
        that sets it, with that namespace's path; None when none does."""
        path = repository
        while path:
            ns = self.namespaces.get(path)
            if ns is not None:
                value = getattr(ns.record, name)
                if value:
                    return path, value
            path = path.rpartition("/")[0]
        return None

    def holders(self, repository: str, action: str) -> Holders:
        """Who holds ``action`` on ``repository`` by the database (besides its admins): the deciding
        namespace's members whose role allows it, or the user whose personal namespace it is."""
        ns = self.closest(repository)
        allows = {role for role, actions in roles.ACTIONS.items() if action in actions}
        if ns is None:
            owner = self.personal_owner(repository)
            return Holders(None, ((owner, roles.OWNER),) if owner is not None else (), (), False)
        users = {name: role for name, role in ns.users.items() if role in allows and self.user(name) is not None}
        if ns.record.personal is not None and self.user(ns.record.personal) is not None:
            users[ns.record.personal] = roles.OWNER
        teams = {name: role for name, role in ns.teams.items() if role in allows}
        return Holders(ns.path, tuple(sorted(users.items())), tuple(sorted(teams.items())),
                       action == "pull" and ns.record.public)

    def managed_by(self, user: str | None, path: str, extra_teams: frozenset[str] = frozenset()) -> str | None:
        """The role that lets ``user`` manage the namespace ``path``: their role on it, or ``owner`` when
        they own a namespace above it (owners administer what is below them)."""
        if user is None:
            return None
        held = self.role(user, path, extra_teams)
        parent = path.rpartition("/")[0]
        while parent:
            if self.role(user, parent, extra_teams) == roles.OWNER:
                return roles.OWNER
            parent = parent.rpartition("/")[0]
        return held


def policy_cache(db: Database) -> Cached[PolicySnapshot]:
    """The snapshot, following the change feed (one per process: the policy, the users' credentials and
    the management API share it)."""
    from storage.database.identity import load_policy  # SQLAlchemy only for a registry with auth.database

    return db.feed.follow(Cached(db, lambda conn: PolicySnapshot(load_policy(conn)), "access policy"))


class DatabasePolicy:
    """The file's rules first, then the database (see the module's docstring); the same questions as
    ``AccessRules`` so every controller and the token server can ask either."""

    def __init__(self, rules: AccessRules, cache: Cached[PolicySnapshot], teams: TeamsOf = no_teams) -> None:
        """``teams``: the teams a directory reports for a user (auth.ldap, auth.oidc)."""
        self.rules = rules
        self.cache = cache
        self.teams = teams

    async def refresh(self, writes: bool = False) -> PolicySnapshot:
        """A snapshot confirmed within MAX_AGE (no query while the feed's poller keeps it so)."""
        return await self.cache.fresh(MAX_AGE)

    def snapshot(self) -> PolicySnapshot:
        """The current snapshot for a synchronous decision; 503 when it is older than STALE."""
        snapshot = self.cache.peek()
        if snapshot is None or self.cache.age() > STALE:
            raise DatabaseUnavailable("the access policy cannot be confirmed: the database does not answer")
        return snapshot

    def is_admin(self, user: str | None) -> bool:
        return self.rules.is_admin(user) or self.snapshot().is_admin(user)

    def actions(self, user: str | None, type_: str, name: str) -> frozenset[str]:
        if type_ == "registry":
            return roles.EVERYTHING if self.is_admin(user) else self.rules.actions(user, type_, name)
        if type_ != "repository" or not valid_repository(name):
            return frozenset()
        if self.is_admin(user):
            return roles.EVERYTHING
        decided = self.rules.decide(user, name)
        if decided is not None:
            return decided
        return self.snapshot().actions(user, name, self.teams(user) if user else frozenset())

    def grant(self, user: str | None, type_: str, name: str, wanted: set[str]) -> set[str]:
        allowed = self.actions(user, type_, name)
        return {a for a in wanted if a in allowed}

    def holders(self, repository: str, action: str) -> Holders:
        """Who may do ``action`` on ``repository`` (see ``Holders``)."""
        found = self.snapshot().holders(repository, action)
        return replace(found, rules=self.rules.may_decide(repository))


def namespaces_of(snapshot: PolicySnapshot, user: str, extra_teams: frozenset[str] = frozenset()
                  ) -> Iterable[tuple[str, str]]:
    """``(path, role)`` of every namespace where ``user`` holds a role, their personal one included."""
    teams = snapshot.teams_of(user, extra_teams)
    for path, ns in snapshot.namespaces.items():
        if ns.record.personal == user or user in ns.users or teams & ns.teams.keys():
            role = snapshot.role_in(ns, user, extra_teams)
            if role is not None:
                yield path, role
