"""Reading and writing the identity and policy store: users, teams, namespaces, members, the change log.

Plain data access inside a caller's transaction (functions of a ``Connection``); what may be changed by
whom, and what is valid, is decided in ``auth/manage.py``.  Lists are paged by name (keyset: ``after``
the last name seen), so a page costs the same at any depth.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from storage.database.records import (
    TEAM,
    USER,
    ChangeRecord,
    MemberRecord,
    NamespaceRecord,
    PolicyData,
    TeamRecord,
    UserRecord,
    now,
    utc,
)
from storage.database.schema import changes, namespace_members, namespaces, team_members, teams, users

# --- users ---------------------------------------------------------------------------------------------


def _user(row: Any) -> UserRecord:
    return UserRecord(row.id, row.name, row.email, row.password, bool(row.admin), bool(row.disabled),
                      utc(row.created), utc(row.last_login), utc(row.credentials_changed))  # type: ignore[arg-type]


def find_user(conn: Connection, name: str) -> UserRecord | None:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    return _user(row) if row is not None else None


def list_users(conn: Connection, after: str | None, limit: int, containing: str | None = None) -> list[UserRecord]:
    """A page of users; ``containing``: only those whose name or e-mail contains it (any case)."""
    query = select(users).order_by(users.c.name).limit(limit)
    if after is not None:
        query = query.where(users.c.name > after)
    if containing:
        term = containing.lower()
        query = query.where(users.c.name.contains(term, autoescape=True)
                            | func.lower(users.c.email).contains(term, autoescape=True))
    return [_user(row) for row in conn.execute(query)]


def insert_user(conn: Connection, name: str, password: str | None, email: str | None = None,
                admin: bool = False) -> UserRecord:
    stamp = now()
    values = {"name": name, "password": password, "email": email, "admin": admin, "disabled": False,
              "created": stamp, "credentials_changed": stamp}
    user_id = conn.execute(insert(users).values(**values)).inserted_primary_key[0]  # type: ignore[index]
    return UserRecord(user_id, name, email, password, admin, False, stamp, None, stamp)


def update_user(conn: Connection, user_id: int, **values: Any) -> None:
    """Changing the password or the disabled flag moves ``credentials_changed`` (sessions end)."""
    if "password" in values or "disabled" in values:
        values["credentials_changed"] = now()
    conn.execute(update(users).where(users.c.id == user_id).values(**values))


def delete_user(conn: Connection, user_id: int) -> None:
    conn.execute(delete(users).where(users.c.id == user_id))


def enabled_admins(conn: Connection) -> list[str]:
    query = select(users.c.name).where(users.c.admin.is_(True), users.c.disabled.is_(False))
    return list(conn.execute(query).scalars())


def record_login(conn: Connection, name: str) -> None:
    conn.execute(update(users).where(users.c.name == name).values(last_login=now()))


# --- teams ---------------------------------------------------------------------------------------------


def find_team(conn: Connection, name: str) -> TeamRecord | None:
    row = conn.execute(select(teams).where(teams.c.name == name)).first()
    if row is None:
        return None
    count = conn.execute(select(func.count()).where(team_members.c.team_id == row.id)).scalar_one()
    return TeamRecord(row.id, row.name, utc(row.created), int(count))  # type: ignore[arg-type]


def list_teams(conn: Connection, after: str | None, limit: int, names: Iterable[str] | None = None) -> list[TeamRecord]:
    """A page of teams (only ``names`` when given), with their member counts."""
    count = select(func.count()).where(team_members.c.team_id == teams.c.id).scalar_subquery()
    query = select(teams, count.label("members")).order_by(teams.c.name).limit(limit)
    if after is not None:
        query = query.where(teams.c.name > after)
    if names is not None:
        query = query.where(teams.c.name.in_(list(names)))
    return [TeamRecord(r.id, r.name, utc(r.created), int(r.members)) for r in conn.execute(query)]  # type: ignore[arg-type]


def insert_team(conn: Connection, name: str) -> TeamRecord:
    stamp = now()
    team_id = conn.execute(insert(teams).values(name=name, created=stamp)).inserted_primary_key[0]  # type: ignore[index]
    return TeamRecord(team_id, name, stamp)


def delete_team(conn: Connection, team_id: int) -> None:
    conn.execute(delete(teams).where(teams.c.id == team_id))


def team_member_names(conn: Connection, team_id: int, after: str | None = None,
                      limit: int | None = None) -> list[str]:
    query = (select(users.c.name).join(team_members, team_members.c.user_id == users.c.id)
             .where(team_members.c.team_id == team_id).order_by(users.c.name))
    if after is not None:
        query = query.where(users.c.name > after)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def is_team_member(conn: Connection, team_id: int, user_id: int) -> bool:
    query = select(team_members.c.user_id).where(team_members.c.team_id == team_id,
                                                 team_members.c.user_id == user_id)
    return conn.execute(query).first() is not None


def add_team_member(conn: Connection, team_id: int, user_id: int) -> None:
    conn.execute(insert(team_members).values(team_id=team_id, user_id=user_id))


def remove_team_member(conn: Connection, team_id: int, user_id: int) -> None:
    conn.execute(delete(team_members).where(team_members.c.team_id == team_id, team_members.c.user_id == user_id))


def teams_of(conn: Connection, user_id: int) -> list[str]:
    query = (select(teams.c.name).join(team_members, team_members.c.team_id == teams.c.id)
             .where(team_members.c.user_id == user_id).order_by(teams.c.name))
    return list(conn.execute(query).scalars())


# --- namespaces ----------------------------------------------------------------------------------------


def _namespace_query() -> Any:
    return select(namespaces, users.c.name.label("personal")).outerjoin(
        users, users.c.id == namespaces.c.personal_user_id)


def _namespace(row: Any) -> NamespaceRecord:
    return NamespaceRecord(row.id, row.path, bool(row.public), row.personal, row.quota, row.retention,
                           tuple(row.immutable_tags or ()), utc(row.created))  # type: ignore[arg-type]


def find_namespace(conn: Connection, path: str) -> NamespaceRecord | None:
    row = conn.execute(_namespace_query().where(namespaces.c.path == path)).first()
    return _namespace(row) if row is not None else None


def list_namespaces(conn: Connection, after: str | None, limit: int,
                    paths: Iterable[str] | None = None) -> list[NamespaceRecord]:
    query = _namespace_query().order_by(namespaces.c.path).limit(limit)
    if after is not None:
        query = query.where(namespaces.c.path > after)
    if paths is not None:
        query = query.where(namespaces.c.path.in_(list(paths)))
    return [_namespace(row) for row in conn.execute(query)]


def insert_namespace(conn: Connection, path: str, public: bool = False, personal_user_id: int | None = None
                     ) -> NamespaceRecord:
    stamp = now()
    values = {"path": path, "public": public, "personal_user_id": personal_user_id, "created": stamp,
              "immutable_tags": []}
    ns_id = conn.execute(insert(namespaces).values(**values)).inserted_primary_key[0]  # type: ignore[index]
    found = find_namespace(conn, path)
    assert found is not None and found.id == ns_id
    return found


def update_namespace(conn: Connection, ns_id: int, **values: Any) -> None:
    if "immutable_tags" in values:
        values["immutable_tags"] = list(values["immutable_tags"])
    conn.execute(update(namespaces).where(namespaces.c.id == ns_id).values(**values))


def delete_namespace(conn: Connection, ns_id: int) -> None:
    conn.execute(delete(namespaces).where(namespaces.c.id == ns_id))


def members_of(conn: Connection, ns_id: int, path: str) -> list[MemberRecord]:
    query = (select(namespace_members.c.role, users.c.name.label("user"), teams.c.name.label("team"))
             .outerjoin(users, users.c.id == namespace_members.c.user_id)
             .outerjoin(teams, teams.c.id == namespace_members.c.team_id)
             .where(namespace_members.c.namespace_id == ns_id))
    found = [MemberRecord(path, USER if r.user is not None else TEAM, r.user or r.team, r.role)
             for r in conn.execute(query)]
    return sorted(found, key=lambda m: (m.kind, m.name))


def set_member(conn: Connection, ns_id: int, kind: str, member_id: int, role: str) -> str | None:
    """Add the member or change its role; returns the role it held before (None: new)."""
    column = namespace_members.c.user_id if kind == USER else namespace_members.c.team_id
    where = (namespace_members.c.namespace_id == ns_id, column == member_id)
    before = conn.execute(select(namespace_members.c.role).where(*where)).scalar()
    if before is None:
        conn.execute(insert(namespace_members).values(namespace_id=ns_id, role=role, **{column.name: member_id}))
    elif before != role:
        conn.execute(update(namespace_members).where(*where).values(role=role))
    return before


def remove_member(conn: Connection, ns_id: int, kind: str, member_id: int) -> str | None:
    """Returns the role removed (None: was no member)."""
    column = namespace_members.c.user_id if kind == USER else namespace_members.c.team_id
    where = (namespace_members.c.namespace_id == ns_id, column == member_id)
    before = conn.execute(select(namespace_members.c.role).where(*where)).scalar()
    if before is not None:
        conn.execute(delete(namespace_members).where(*where))
    return before


# --- the change log ------------------------------------------------------------------------------------


def record_change(conn: Connection, actor: str | None, address: str | None, action: str, target: str,
                  namespace: str | None = None, before: Any = None, after: Any = None) -> ChangeRecord:
    at = now()
    values = {"at": at, "actor": actor, "address": address or None, "action": action, "target": target,
              "namespace": namespace, "before": before, "after": after}
    change_id = conn.execute(insert(changes).values(**values)).inserted_primary_key[0]  # type: ignore[index]
    return ChangeRecord(change_id, at, actor, address or None, action, target, namespace, before, after)


def list_changes(conn: Connection, before_id: int | None, limit: int,
                 namespaces_: Iterable[str] | None = None) -> list[ChangeRecord]:
    """Newest first; only changes of ``namespaces_`` (and below them) when given."""
    query = select(changes).order_by(changes.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(changes.c.id < before_id)
    if namespaces_ is not None:
        paths = list(namespaces_)
        if not paths:
            return []
        query = query.where(changes.c.namespace.in_(paths))
    return [ChangeRecord(r.id, utc(r.at), r.actor, r.address, r.action, r.target, r.namespace, r.before,  # type: ignore[arg-type]
                         r.after) for r in conn.execute(query)]


# --- the policy snapshot -------------------------------------------------------------------------------


def load_policy(conn: Connection) -> PolicyData:
    """Every user, team membership, namespace and member (a few thousand rows for a large company)."""
    all_users = tuple(_user(row) for row in conn.execute(select(users)))
    names = {u.id: u.name for u in all_users}
    team_names = {r.id: r.name for r in conn.execute(select(teams.c.id, teams.c.name))}
    grouped: dict[str, set[str]] = {name: set() for name in team_names.values()}
    for row in conn.execute(select(team_members)):
        grouped[team_names[row.team_id]].add(names[row.user_id])
    all_namespaces = tuple(_namespace(row) for row in conn.execute(_namespace_query()))
    paths = {ns.id: ns.path for ns in all_namespaces}
    members = tuple(
        MemberRecord(paths[r.namespace_id], USER if r.user_id is not None else TEAM,
                     names[r.user_id] if r.user_id is not None else team_names[r.team_id], r.role)
        for r in conn.execute(select(namespace_members)))
    return PolicyData(all_users, {team: frozenset(m) for team, m in grouped.items()}, all_namespaces, members,
                      frozenset(team_names.values()))
