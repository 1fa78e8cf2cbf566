"""Reading and writing machine identities: robot accounts and access tokens (plain data access inside a
caller's transaction; auth/tokens.py decides who may do what and checks what is valid).

Secrets are never stored: a token row holds the keyed hash of its secret (``digest``)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from storage.database.records import ExternalRecord, RobotRecord, TokenRecord, now, robot_name, utc
from storage.database.schema import external_users, namespaces, robots, tokens, users

# --- robots ---------------------------------------------------------------------------------------------


def _robot_query() -> Any:
    return select(robots, namespaces.c.path.label("namespace")).join(
        namespaces, namespaces.c.id == robots.c.namespace_id)


def _robot(row: Any) -> RobotRecord:
    return RobotRecord(row.id, row.namespace, row.name, tuple(row.actions or ()), row.description,
                       utc(row.created), row.created_by)  # type: ignore[arg-type]


def find_robot(conn: Connection, namespace: str, name: str) -> RobotRecord | None:
    row = conn.execute(_robot_query().where(namespaces.c.path == namespace, robots.c.name == name)).first()
    return _robot(row) if row is not None else None


def list_robots(conn: Connection, namespace: str | None = None) -> list[RobotRecord]:
    query = _robot_query().order_by(namespaces.c.path, robots.c.name)
    if namespace is not None:
        query = query.where(namespaces.c.path == namespace)
    return [_robot(row) for row in conn.execute(query)]


def insert_robot(conn: Connection, namespace_id: int, name: str, actions: Iterable[str], description: str | None,
                 created_by: str | None) -> int:
    values = {"namespace_id": namespace_id, "name": name, "actions": list(actions), "description": description,
              "created": now(), "created_by": created_by}
    return conn.execute(insert(robots).values(**values)).inserted_primary_key[0]  # type: ignore[index,no-any-return]


def delete_robot(conn: Connection, robot_id: int) -> None:
    conn.execute(delete(robots).where(robots.c.id == robot_id))


# --- tokens ---------------------------------------------------------------------------------------------


def _token_query() -> Any:
    robot = _robot_query().subquery("robot")
    return (select(tokens, users.c.name.label("user_name"), users.c.disabled.label("user_disabled"),
                   robot.c.namespace.label("robot_namespace"), robot.c.name.label("robot_name"),
                   robot.c.actions.label("robot_actions"), robot.c.description.label("robot_description"),
                   robot.c.created.label("robot_created"), robot.c.created_by.label("robot_created_by"))
            .outerjoin(users, users.c.id == tokens.c.user_id)
            .outerjoin(robot, robot.c.id == tokens.c.robot_id))


def _token(row: Any) -> TokenRecord:
    robot = None
    if row.robot_id is not None:
        robot = RobotRecord(row.robot_id, row.robot_namespace, row.robot_name, tuple(row.robot_actions or ()),
                            row.robot_description, utc(row.robot_created), row.robot_created_by)  # type: ignore[arg-type]
    owner = robot_name(robot.namespace, robot.name) if robot is not None else row.user_name
    repositories = tuple(row.repositories) if row.repositories is not None else None
    return TokenRecord(row.id, owner, robot, row.name, row.digest, tuple(row.scopes), repositories,
                       utc(row.created), row.created_by, utc(row.expires), utc(row.last_used),  # type: ignore[arg-type]
                       row.last_address, bool(row.user_disabled))


def find_token(conn: Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(_token_query().where(tokens.c.id == token_id)).first()
    return _token(row) if row is not None else None


def all_tokens(conn: Connection) -> dict[str, TokenRecord]:
    """Every token by id, for the verification cache (one query)."""
    return {record.id: record for record in map(_token, conn.execute(_token_query()))}


def tokens_of(conn: Connection, user_id: int | None = None, robot_id: int | None = None,
              namespace: str | None = None, limit: int | None = None, offset: int = 0) -> list[TokenRecord]:
    """A user's tokens, a robot's, those of every robot of ``namespace``, or (none of them given) every
    token; newest first, ``limit`` of them from ``offset`` when given."""
    query = _token_query().order_by(tokens.c.created.desc(), tokens.c.id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    if user_id is not None:
        query = query.where(tokens.c.user_id == user_id)
    elif robot_id is not None:
        query = query.where(tokens.c.robot_id == robot_id)
    elif namespace is not None:
        ids = select(robots.c.id).join(namespaces, namespaces.c.id == robots.c.namespace_id).where(
            namespaces.c.path == namespace)
        query = query.where(tokens.c.robot_id.in_(ids))
    return [_token(row) for row in conn.execute(query)]


def count_tokens(conn: Connection, user_id: int | None = None, robot_id: int | None = None) -> int:
    column = tokens.c.user_id if user_id is not None else tokens.c.robot_id
    return int(conn.execute(select(func.count()).where(column == (user_id if user_id is not None else robot_id)))
               .scalar_one())


def insert_token(conn: Connection, token_id: str, name: str, digest: str, scopes: Iterable[str],
                 repositories: Iterable[str] | None, expires: datetime.datetime | None, created_by: str | None,
                 user_id: int | None = None, robot_id: int | None = None) -> None:
    conn.execute(insert(tokens).values(
        id=token_id, user_id=user_id, robot_id=robot_id, name=name, digest=digest, scopes=list(scopes),
        repositories=list(repositories) if repositories is not None else None, created=now(),
        created_by=created_by, expires=expires))


def delete_token(conn: Connection, token_id: str) -> None:
    conn.execute(delete(tokens).where(tokens.c.id == token_id))


def record_uses(conn: Connection, uses: dict[str, tuple[datetime.datetime, str]]) -> None:
    """The last use (time, address) of each token, in one transaction (batched by auth/tokens.py)."""
    for token_id, (at, address) in uses.items():
        conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used=at, last_address=address[:64]))


# --- users of directories and single sign-on --------------------------------------------------------------


def all_external(conn: Connection) -> dict[str, ExternalRecord]:
    query = select(external_users, users.c.name, users.c.email).join(users, users.c.id == external_users.c.user_id)
    return {row.name: ExternalRecord(row.name, row.source, row.subject, frozenset(row.teams or ()), row.email)
            for row in conn.execute(query)}


def save_external(conn: Connection, user_id: int, source: str, subject: str | None, teams: Iterable[str]) -> None:
    values = {"source": source, "subject": subject, "teams": sorted(teams), "seen": now()}
    if conn.execute(select(external_users.c.user_id).where(external_users.c.user_id == user_id)).first() is None:
        conn.execute(insert(external_users).values(user_id=user_id, **values))
    else:
        conn.execute(update(external_users).where(external_users.c.user_id == user_id).values(**values))
