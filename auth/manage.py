"""Managing users, teams and namespaces: one behaviour for the REST API, the CLI and the web UI.

Every operation takes the ``Caller`` (who asks, from where) and checks, inside the transaction that
makes the change, that they may: only admins manage users and teams; a namespace is managed by its
owners and the owners of namespaces above it (members, visibility, deleting below), maintainers set its
retention and immutable tags, admins its quota and the top-level namespaces; nobody grants a role above
their own; the last enabled admin is never removed, disabled or demoted.  Writes are serialized
(storage/database/engine.py), so these checks cannot race another replica's change.

Every change is recorded (who, what, from where, before and after: never a password hash) in the
``changes`` table in the same transaction, then handed to the listeners (the audit trail and the
notifications) once committed.  Errors are ``Refused`` with an HTTP status and one of the registry's
error codes, which the API answers as they are and the CLI prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from auth import roles
from auth.htpasswd import BCRYPT_PREFIXES, DEFAULT_COST
from auth.policy import MAX_AGE, PolicySnapshot, namespaces_of
from auth.terms import (
    MAX_EMAIL,
    UNSET,
    Caller,
    NamespaceView,
    Refused,
    check_email,
    check_name,
    check_password,
    check_path,
    check_role,
    check_tag_patterns,
    conflict,
    denied,
    existing,
    invalid,
    namespace_view,
    not_found,
    user_view,
)
from storage.database import Cached, Database, DatabaseUnavailable
from storage.database import identity as store
from storage.database.records import TEAM, USER, ChangeRecord, MemberRecord, NamespaceRecord, TeamRecord, UserRecord

log = logging.getLogger("moorage.auth")
MAX_TEAM_MEMBERS = 5000
MAX_PAGE = 1000


class Authority:
    """What the caller holds, read inside a write transaction (the policy snapshot only when needed),
    and the changes the transaction recorded."""

    def __init__(self, conn: Connection, caller: Caller, file_admin: Callable[[str | None], bool]) -> None:
        self.conn = conn
        self.caller = caller
        self.file_admin = file_admin
        self.changes: list[ChangeRecord] = []
        self._snapshot: PolicySnapshot | None = None
        self._admin: bool | None = None

    @property
    def snapshot(self) -> PolicySnapshot:
        if self._snapshot is None:
            self._snapshot = PolicySnapshot(store.load_policy(self.conn))
        return self._snapshot

    @property
    def admin(self) -> bool:
        if self._admin is None:
            user = store.find_user(self.conn, self.caller.name) if self.caller.name else None
            self._admin = (self.caller.operator or self.file_admin(self.caller.name)
                           or (user is not None and user.admin and not user.disabled))
        return self._admin

    # The records a change names: a refusal (404) when there is none.
    def user(self, name: str) -> UserRecord:
        return existing(store.find_user(self.conn, name), "user", name)

    def team(self, name: str) -> TeamRecord:
        return existing(store.find_team(self.conn, name), "team", name)

    def namespace(self, path: str) -> NamespaceRecord:
        return existing(store.find_namespace(self.conn, path), "namespace", path)

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise denied(f"only admins {what}")

    def manages(self, path: str) -> str | None:
        """The caller's managing role on ``path`` (admins: owner)."""
        if self.admin:
            return roles.OWNER
        return self.snapshot.managed_by(self.caller.name, path, self.caller.teams)

    def record(self, action: str, target: str, namespace: str | None = None, before: Any = None,
               after: Any = None) -> None:
        self.changes.append(store.record_change(self.conn, self.caller.who, self.caller.address, action, target,
                                                namespace, before, after))


def integrity(error: IntegrityError, message: str) -> Refused:
    """A unique constraint lost to a concurrent change: the same answer as when it was seen first."""
    log.info("integrity error (%s): %s", message, str(error.orig).splitlines()[0])
    return conflict(message)


Listener = Callable[[ChangeRecord], None]
RetentionCheck = Callable[[dict[str, Any]], dict[str, Any]]


def any_retention(policy: dict[str, Any]) -> dict[str, Any]:
    return policy


async def recorded_write(db: Database, caller: Caller, file_admin: Callable[[str | None], bool],
                         work: Callable[[Authority], Any], listeners: Iterable[Listener]) -> Any:
    """``work`` in one policy write with the caller's authority; the changes it recorded go to the
    listeners once committed (also for auth/tokens.py's changes)."""
    recorded: list[ChangeRecord] = []

    def run(conn: Connection) -> Any:
        recorded.clear()
        authority = Authority(conn, caller, file_admin)
        result = work(authority)
        recorded.extend(authority.changes)
        return result

    result = await db.write(run)
    for change in recorded:
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("change listener failed")
    return result


class Management:
    """The service: users, teams, namespaces and members, as any caller may manage them."""

    def __init__(self, db: Database, cache: Cached[PolicySnapshot] | None = None,
                 file_admin: Callable[[str | None], bool] = lambda user: False,
                 check_retention: RetentionCheck = any_retention) -> None:
        """``file_admin``: admins of ``auth.access.admins``; ``check_retention``: validates a retention
        policy (the registry's, which owns the retention policies) and returns it normalized."""
        self.db = db
        self.cache = cache
        self.file_admin = file_admin
        self.check_retention = check_retention
        self.listeners: list[Listener] = []
        self.cost = DEFAULT_COST  # bcrypt's

    # --- plumbing ------------------------------------------------------------------------------------

    async def _write(self, caller: Caller, work: Callable[[Authority], Any]) -> Any:
        """``work`` in one policy write; its recorded changes go to the listeners after the commit."""
        result = await recorded_write(self.db, caller, self.file_admin, work, self.listeners)
        if self.cache is not None:
            with contextlib.suppress(DatabaseUnavailable):  # the poll catches up otherwise
                await self.cache.refresh()  # this replica's next decision sees the change at once
        return result

    async def _read(self, caller: Caller, work: Callable[[Authority], Any]) -> Any:
        return await self.db.read(lambda conn: work(Authority(conn, caller, self.file_admin)))

    async def hash(self, password: str) -> str:
        """bcrypt off the event loop (a quarter of a second of CPU at the default cost)."""
        return await asyncio.to_thread(check_password, password, self.cost)

    async def snapshot(self) -> PolicySnapshot:
        """The current policy (for listings decided by it)."""
        if self.cache is None:
            return await self.db.read(lambda conn: PolicySnapshot(store.load_policy(conn)))
        return await self.cache.fresh(MAX_AGE)

    # --- users ---------------------------------------------------------------------------------------

    async def list_users(self, caller: Caller, after: str | None, limit: int,
                         containing: str | None = None) -> list[UserRecord]:
        """``containing``: only users whose name or e-mail contains it."""
        def work(a: Authority) -> list[UserRecord]:
            a.require_admin("list users")
            return store.list_users(a.conn, after, min(limit, MAX_PAGE), (containing or "")[:MAX_EMAIL] or None)

        return await self._read(caller, work)

    async def get_user(self, caller: Caller, name: str) -> tuple[UserRecord, list[str]]:
        """The user and their teams: for admins and the user themselves."""
        def work(a: Authority) -> tuple[UserRecord, list[str]]:
            if caller.name != name:
                a.require_admin("see other users")
            user = a.user(name)
            return user, store.teams_of(a.conn, user.id)

        return await self._read(caller, work)

    async def create_user(self, caller: Caller, name: str, password: str | None = None, email: str | None = None,
                          admin: bool = False, password_hash: str | None = None) -> UserRecord:
        """``password_hash``: an existing bcrypt hash (``user import``) instead of a password."""
        check_name("user", name)
        email = check_email(email)
        hashed = await self.hash(password) if password is not None else password_hash

        def work(a: Authority) -> UserRecord:
            a.require_admin("create users")
            if store.find_user(a.conn, name) is not None:
                raise conflict(f"user {name!r} exists")
            ns = store.find_namespace(a.conn, name)
            if ns is not None and ns.personal is None:
                raise conflict(f"{name!r} is a namespace: a user of that name would not own it")
            try:
                user = store.insert_user(a.conn, name, hashed, email, bool(admin))
            except IntegrityError as e:
                raise integrity(e, f"user {name!r} exists") from None
            a.record("user.create", name, after=user_view(user))
            self._namespace(a, name)  # their personal namespace
            return user

        return await self._write(caller, work)

    async def update_user(self, caller: Caller, name: str, *, password: str | None = UNSET, email: str | None = UNSET,
                          admin: bool = UNSET, disabled: bool = UNSET) -> UserRecord:
        """Users change their own password and e-mail; admins anything.  A password change or disabling
        ends the user's sessions and refreshes (``credentials_changed``)."""
        values: dict[str, Any] = {}
        if password is not UNSET:
            values["password"] = await self.hash(password) if password is not None else None
        if email is not UNSET:
            values["email"] = check_email(email)
        for key, value in (("admin", admin), ("disabled", disabled)):
            if value is not UNSET:
                if not isinstance(value, bool):
                    raise invalid(f"{key} must be true or false")
                values[key] = value

        def work(a: Authority) -> UserRecord:
            if caller.name != name or "admin" in values or "disabled" in values:
                a.require_admin("change other users, admin rights or the disabled flag")
            user = a.user(name)
            losing = user.admin and not user.disabled and (values.get("admin") is False or values.get("disabled"))
            if losing and store.enabled_admins(a.conn) == [name]:
                raise conflict(f"{name!r} is the last admin: make another user admin first")
            if values:
                store.update_user(a.conn, user.id, **values)
            updated = store.find_user(a.conn, name)
            assert updated is not None
            after = user_view(updated) | ({"password": "changed"} if "password" in values else {})
            a.record("user.update", name, before=user_view(user), after=after)
            return updated

        return await self._write(caller, work)

    async def remove_user(self, caller: Caller, name: str) -> None:
        def work(a: Authority) -> None:
            a.require_admin("remove users")
            user = a.user(name)
            if user.admin and not user.disabled and store.enabled_admins(a.conn) == [name]:
                raise conflict(f"{name!r} is the last admin: make another user admin first")
            store.delete_user(a.conn, user.id)
            a.record("user.remove", name, before=user_view(user))

        await self._write(caller, work)

    async def import_users(self, caller: Caller, entries: dict[str, bytes]) -> tuple[list[str], list[str]]:
        """htpasswd entries (name -> bcrypt hash) as users, keeping their hashes; existing users and names
        the database does not accept are skipped.  Returns (imported, skipped with why)."""
        imported: list[str] = []
        skipped: list[str] = []
        for name, hashed in entries.items():
            if not hashed.startswith(BCRYPT_PREFIXES):
                skipped.append(f"{name}: not a bcrypt hash")
                continue
            try:
                await self.create_user(caller, name, password_hash=hashed.decode())
                imported.append(name)
            except Refused as e:
                skipped.append(f"{name}: {e.message}")
        return imported, skipped

    # --- teams ---------------------------------------------------------------------------------------

    async def list_teams(self, caller: Caller, after: str | None, limit: int) -> list[TeamRecord]:
        def work(a: Authority) -> list[TeamRecord]:
            if caller.name is None and not caller.operator:
                raise denied("log in to see teams")
            return store.list_teams(a.conn, after, min(limit, MAX_PAGE))

        return await self._read(caller, work)

    async def get_team(self, caller: Caller, name: str, after: str | None = None, limit: int = MAX_PAGE
                       ) -> tuple[TeamRecord, list[str]]:
        """The team and a page of its members: for admins and the team's members."""
        def work(a: Authority) -> tuple[TeamRecord, list[str]]:
            team = a.team(name)
            me = store.find_user(a.conn, caller.name) if caller.name else None
            if not (me is not None and store.is_team_member(a.conn, team.id, me.id)):
                a.require_admin("see the members of teams they are not in")
            return team, store.team_member_names(a.conn, team.id, after, min(limit, MAX_PAGE))

        return await self._read(caller, work)

    async def create_team(self, caller: Caller, name: str, members: Iterable[str] = ()) -> TeamRecord:
        check_name("team", name)
        wanted = sorted(set(members))
        if len(wanted) > MAX_TEAM_MEMBERS:
            raise invalid(f"a team has at most {MAX_TEAM_MEMBERS} members, got {len(wanted)}")

        def work(a: Authority) -> TeamRecord:
            a.require_admin("create teams")
            if store.find_team(a.conn, name) is not None:
                raise conflict(f"team {name!r} exists")
            try:
                team = store.insert_team(a.conn, name)
            except IntegrityError as e:
                raise integrity(e, f"team {name!r} exists") from None
            for user_name in wanted:
                user = a.user(user_name)
                store.add_team_member(a.conn, team.id, user.id)
            a.record("team.create", name, after={"name": name, "members": wanted})
            return store.find_team(a.conn, name)

        return await self._write(caller, work)

    async def remove_team(self, caller: Caller, name: str) -> None:
        def work(a: Authority) -> None:
            a.require_admin("remove teams")
            team = a.team(name)
            store.delete_team(a.conn, team.id)
            a.record("team.remove", name, before={"name": name, "members": team.members})

        await self._write(caller, work)

    async def add_team_member(self, caller: Caller, team_name: str, user_name: str) -> None:
        def work(a: Authority) -> None:
            a.require_admin("change teams")
            team, user = a.team(team_name), a.user(user_name)
            if store.is_team_member(a.conn, team.id, user.id):
                return
            if team.members >= MAX_TEAM_MEMBERS:
                raise conflict(f"team {team_name!r} is full: at most {MAX_TEAM_MEMBERS} members")
            store.add_team_member(a.conn, team.id, user.id)
            a.record("team.member.add", team_name, after={"user": user_name})

        await self._write(caller, work)

    async def remove_team_member(self, caller: Caller, team_name: str, user_name: str) -> None:
        def work(a: Authority) -> None:
            a.require_admin("change teams")
            team, user = a.team(team_name), a.user(user_name)
            if not store.is_team_member(a.conn, team.id, user.id):
                raise not_found(f"member of team {team_name!r} named", user_name)
            store.remove_team_member(a.conn, team.id, user.id)
            a.record("team.member.remove", team_name, before={"user": user_name})

        await self._write(caller, work)

    # --- namespaces ----------------------------------------------------------------------------------

    async def list_namespaces(self, caller: Caller, after: str | None, limit: int) -> list[NamespaceView]:
        """Admins see every namespace; others those they hold a role on, and the public ones."""
        snapshot = await self.snapshot()
        admin = caller.operator or self.file_admin(caller.name) or snapshot.is_admin(caller.name)
        held = dict(namespaces_of(snapshot, caller.name, caller.teams)) if caller.name else {}
        paths = sorted(path for path, ns in snapshot.namespaces.items()
                       if (after is None or path > after) and (admin or path in held or ns.record.public))
        return [NamespaceView(snapshot.namespaces[p].record, roles.OWNER if admin else held.get(p))
                for p in paths[:min(limit, MAX_PAGE)]]

    async def get_namespace(self, caller: Caller, path: str) -> NamespaceView:
        """A namespace with its members, for whoever holds a role on it (or may pull, if it is public)."""
        path = check_path(path)

        def work(a: Authority) -> NamespaceView:
            ns = a.namespace(path)
            role = a.manages(path)
            if role is None and not ns.public:
                raise not_found("namespace", path)  # alike for what does not exist and what is not theirs
            return NamespaceView(ns, role, tuple(store.members_of(a.conn, ns.id, path)))

        return await self._read(caller, work)

    async def create_namespace(self, caller: Caller, path: str, public: bool = False) -> NamespaceRecord:
        """Top-level namespaces by admins (a user's own by that user); below one by its managing owners,
        who become owners of the new one (it would hide the namespace above it from them otherwise)."""
        path = check_path(path)
        if not isinstance(public, bool):
            raise invalid("public must be true or false")

        def work(a: Authority) -> NamespaceRecord:
            if store.find_namespace(a.conn, path) is not None:
                raise conflict(f"namespace {path!r} exists")
            personal = None
            if "/" not in path:
                owner = store.find_user(a.conn, path)
                if owner is not None and caller.name != path and not a.admin:
                    raise denied(f"{path!r} is the personal namespace of user {path!r}")
                if owner is not None:
                    personal = owner.id
                elif not a.admin:
                    raise denied("only admins create top-level namespaces")
            elif a.manages(path.rpartition("/")[0]) != roles.OWNER:
                raise denied(f"only owners of the namespace above {path!r} create namespaces in it")
            try:
                ns = store.insert_namespace(a.conn, path, public, personal)
            except IntegrityError as e:
                raise integrity(e, f"namespace {path!r} exists") from None
            me = store.find_user(a.conn, caller.name) if caller.name else None
            if personal is None and me is not None and not a.admin:
                store.set_member(a.conn, ns.id, USER, me.id, roles.OWNER)
            a.record("namespace.create", path, path, after=namespace_view(ns))
            return ns

        return await self._write(caller, work)

    async def update_namespace(self, caller: Caller, path: str, *, public: bool = UNSET, quota: int | None = UNSET,
                               retention: dict[str, Any] | None = UNSET,
                               immutable_tags: Iterable[str] = UNSET) -> NamespaceRecord:
        """Visibility by owners, retention and immutable tags by maintainers, the quota by admins (on
        top-level namespaces, which the usage ledger counts)."""
        path = check_path(path)
        values: dict[str, Any] = {}
        if public is not UNSET:
            if not isinstance(public, bool):
                raise invalid("public must be true or false")
            values["public"] = public
        if quota is not UNSET:
            if quota is not None and (not isinstance(quota, int) or isinstance(quota, bool) or quota < 0):
                raise invalid("quota must be a number of bytes >= 0, or null")
            if "/" in path:
                raise invalid("quotas apply to top-level namespaces (the usage ledger counts those)")
            values["quota"] = quota
        if retention is not UNSET:
            if retention is not None:
                if not isinstance(retention, dict):
                    raise invalid("retention must be an object (keepnewest, olderthan, keeptags, protect) or null")
                try:
                    retention = self.check_retention(retention)
                except ValueError as e:
                    raise invalid(f"retention: {e}") from None
            values["retention"] = retention
        if immutable_tags is not UNSET:
            values["immutable_tags"] = check_tag_patterns(immutable_tags)
        needed = roles.OWNER if "public" in values else roles.MAINTAINER

        def work(a: Authority) -> NamespaceRecord:
            ns = self._namespace(a, path)
            role = a.manages(path)
            if role is None and not ns.public:
                raise not_found("namespace", path)
            if "quota" in values:
                a.require_admin("set quotas")
            if not roles.at_least(role, needed):
                raise denied(f"only {needed}s of {path!r} change this")
            if values:
                store.update_namespace(a.conn, ns.id, **values)
            updated = store.find_namespace(a.conn, path)
            assert updated is not None
            a.record("namespace.update", path, path, before=namespace_view(ns), after=namespace_view(updated))
            return updated

        return await self._write(caller, work)

    async def remove_namespace(self, caller: Caller, path: str) -> None:
        """By admins, or owners of a namespace above it; what it held is then governed from above."""
        path = check_path(path)

        def work(a: Authority) -> None:
            ns = a.namespace(path)
            parent = path.rpartition("/")[0]
            if not a.admin and (ns.personal is not None or not parent or a.manages(parent) != roles.OWNER):
                if a.manages(path) is None and not ns.public:
                    raise not_found("namespace", path)
                raise denied(f"only admins and owners of the namespace above {path!r} remove it")
            store.delete_namespace(a.conn, ns.id)
            a.record("namespace.remove", path, path, before=namespace_view(ns))

        await self._write(caller, work)

    async def set_member(self, caller: Caller, path: str, kind: str, name: str, role: str) -> MemberRecord:
        """Grant ``role`` to a user or team (or change theirs); owners only, never above their own role."""
        path = check_path(path)
        check_role(role)
        if kind not in (USER, TEAM):
            raise invalid("a member is a user or a team")

        def work(a: Authority) -> MemberRecord:
            ns = self._owned_namespace(a, path)  # an owner holds the highest role: it may grant any
            member_id = self._member_id(a, kind, name)
            before = store.set_member(a.conn, ns.id, kind, member_id, role)
            a.record("namespace.member.set", f"{kind}:{name}", path,
                         before={"role": before} if before else None, after={"role": role})
            return MemberRecord(path, kind, name, role)

        return await self._write(caller, work)

    async def remove_member(self, caller: Caller, path: str, kind: str, name: str) -> None:
        path = check_path(path)
        if kind not in (USER, TEAM):
            raise invalid("a member is a user or a team")

        def work(a: Authority) -> None:
            ns = self._owned_namespace(a, path)
            before = store.remove_member(a.conn, ns.id, kind, self._member_id(a, kind, name))
            if before is None:
                raise not_found(f"member of {path!r} named", f"{kind}:{name}")
            a.record("namespace.member.remove", f"{kind}:{name}", path, before={"role": before})

        await self._write(caller, work)

    @staticmethod
    def _member_id(a: Authority, kind: str, name: str) -> int:
        return (a.user(name) if kind == USER else a.team(name)).id

    def _owned_namespace(self, a: Authority, path: str) -> NamespaceRecord:
        """The namespace ``path`` when the caller owns it (members are managed by its owners); a private
        one the caller has no role on is not found rather than refused, so that its existence stays hidden."""
        ns = self._namespace(a, path)
        held = a.manages(path)
        if held is None and not ns.public:
            raise not_found("namespace", path)
        if held != roles.OWNER:
            raise denied(f"only owners of {path!r} manage its members")
        return ns

    def _namespace(self, a: Authority, path: str) -> NamespaceRecord:
        """The namespace ``path``; a user's personal one is created here when first used."""
        ns = store.find_namespace(a.conn, path)
        if ns is not None:
            return ns
        owner = store.find_user(a.conn, path) if "/" not in path else None
        if owner is None:
            raise not_found("namespace", path)
        ns = store.insert_namespace(a.conn, path, personal_user_id=owner.id)
        a.record("namespace.create", path, path, after=namespace_view(ns))
        return ns

    # --- the change log ------------------------------------------------------------------------------

    async def list_changes(self, caller: Caller, before_id: int | None, limit: int,
                           namespace: str | None = None) -> list[ChangeRecord]:
        """Admins see every change; owners the changes of the namespaces they manage (``namespace``: one)."""
        snapshot = await self.snapshot()
        admin = caller.operator or self.file_admin(caller.name) or snapshot.is_admin(caller.name)
        paths: list[str] | None = None
        if namespace is not None:
            namespace = check_path(namespace)
            if not admin and snapshot.managed_by(caller.name, namespace, caller.teams) != roles.OWNER:
                raise denied(f"only owners of {namespace!r} see its changes")
            paths = [namespace]
        elif not admin:
            paths = [p for p in snapshot.namespaces if snapshot.managed_by(caller.name, p, caller.teams) == roles.OWNER]
            if not paths:
                raise denied("only admins and the owners of namespaces see changes")
        return await self.db.read(lambda conn: store.list_changes(conn, before_id, min(limit, MAX_PAGE), paths))
