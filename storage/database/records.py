"""The plain data the identity and policy store hands out, its names and its roles: what the rest of
the registry works with, importable without SQLAlchemy (which only ``identity.py``, ``machine.py`` and the
other modules of this package that talk to the database load)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("reader", "developer", "maintainer", "owner")  # lowest first (auth/roles.py)
USER = "user"
TEAM = "team"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    email: str | None
    password: str | None  # bcrypt hash; None: no local password
    admin: bool
    disabled: bool
    created: datetime.datetime
    last_login: datetime.datetime | None
    credentials_changed: datetime.datetime


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: int
    name: str
    created: datetime.datetime
    members: int = 0


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    id: int
    path: str
    public: bool
    personal: str | None  # the user whose own namespace this is
    quota: int | None
    retention: dict[str, Any] | None
    immutable_tags: tuple[str, ...]
    created: datetime.datetime


@dataclass(frozen=True, slots=True)
class MemberRecord:
    namespace: str
    kind: str  # USER or TEAM
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    id: int
    at: datetime.datetime
    actor: str | None
    address: str | None
    action: str
    target: str
    namespace: str | None
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class PolicyData:
    """Everything authorization decides by, read in one transaction (auth/policy.py builds on it)."""

    users: tuple[UserRecord, ...]
    team_members: Mapping[str, frozenset[str]]  # team -> user names
    namespaces: tuple[NamespaceRecord, ...]
    members: tuple[MemberRecord, ...]
    teams: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ExternalRecord:
    """A user of a directory or a single sign-on, as of their latest login."""

    name: str
    source: str
    subject: str | None
    teams: frozenset[str]
    email: str | None = None


@dataclass(frozen=True, slots=True)
class RobotRecord:
    id: int
    namespace: str
    name: str  # the short name: ``ci`` of ``robot+payments+ci``
    actions: tuple[str, ...]
    description: str | None
    created: datetime.datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    owner: str  # the user's name, or the robot's full name
    robot: RobotRecord | None
    name: str
    digest: str
    scopes: tuple[str, ...]
    repositories: tuple[str, ...] | None
    created: datetime.datetime
    created_by: str | None
    expires: datetime.datetime | None
    last_used: datetime.datetime | None
    last_address: str | None
    owner_disabled: bool = False


def robot_name(namespace: str, name: str) -> str:
    """``robot+payments+ci``: no user or namespace name has a ``+``, so it cannot collide with either."""
    return f"robot+{namespace}+{name}"


def split_robot_name(full: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a robot's full name; None for anything else."""
    if not full.startswith("robot+"):
        return None
    namespace, plus, name = full[len("robot+"):].rpartition("+")
    return (namespace, name) if plus and namespace and name else None
