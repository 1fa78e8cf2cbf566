"""The terms of a management request: who asks (``Caller``), how a request is refused (``Refused``,
with an HTTP status and one of the registry's error codes), and the checks of what it sends.  Shared by
the management service (auth/manage.py), the tokens service (auth/tokens.py) and their front ends (the
API, the CLI and the web UI), and importable without the database."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from auth import roles
from auth.htpasswd import DEFAULT_COST, RESERVED_NAMES, hash_password
from auth.rules import NAME_RE
from auth.settings import TAG_PATTERN_RE
from storage.database.records import MemberRecord, NamespaceRecord, RobotRecord, TokenRecord, UserRecord, robot_name

NAME_PATTERN = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # users and teams (a team's as a directory group's)
MAX_NAME = 64
MAX_EMAIL = 320
MAX_NAMESPACE = 255
MAX_TAG_PATTERNS = 100
Found = TypeVar("Found")


class Refused(Exception):
    """A management request that cannot be done: ``status`` and ``code`` as the registry's errors."""

    def __init__(self, status: int, code: str, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def invalid(message: str, detail: object = None) -> Refused:
    return Refused(400, "INVALID_REQUEST", message, detail)


def not_found(kind: str, name: str) -> Refused:
    return Refused(404, "NOT_FOUND", f"no {kind} {name!r}")


def existing(record: Found | None, kind: str, name: str) -> Found:
    """``record``, or a refusal (404) naming what was not found."""
    if record is None:
        raise not_found(kind, name)
    return record


def conflict(message: str) -> Refused:
    return Refused(409, "CONFLICT", message)


def denied(message: str) -> Refused:
    return Refused(403, "DENIED", message)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: a user (``name``; ``teams`` a directory reports for them), or the operator at the CLI
    (``operator``: direct access to the database, so every right)."""

    name: str | None
    address: str = ""
    operator: bool = False
    teams: frozenset[str] = frozenset()

    @property
    def who(self) -> str:
        return self.name or ("operator" if self.operator else "anonymous")


OPERATOR = Caller(None, operator=True)
UNSET: Any = object()  # "leave as it is" for partial updates


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """A namespace as its managers see it, with the caller's own role."""

    record: NamespaceRecord
    role: str | None
    members: tuple[MemberRecord, ...] = ()


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name:
        raise invalid(f"a {kind} name is required")
    if len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name):
        raise invalid(f"invalid {kind} name {name[:80]!r}: lowercase letters, digits and . _ - between them, "
                      f"at most {MAX_NAME} characters (no /)")
    if name in RESERVED_NAMES:
        raise invalid(f"invalid {kind} name {name!r}: reserved for access rules")
    return name


def check_path(path: str) -> str:
    """A namespace: a repository path prefix (``payments``, ``payments/api``); a trailing / is dropped."""
    if not isinstance(path, str) or not path.strip("/"):
        raise invalid("a namespace path is required")
    path = path[:-1] if path.endswith("/") else path
    if len(path) > MAX_NAMESPACE or not NAME_RE.fullmatch(path):
        raise invalid(f"invalid namespace {path[:80]!r}: lowercase path components as in repository names "
                      "(payments, payments/api)")
    return path


def check_role(role: str) -> str:
    if role not in roles.ROLES:
        raise invalid(f"unknown role {str(role)[:40]!r} (one of {', '.join(roles.ROLES)})")
    return role


def check_email(email: str | None) -> str | None:
    if email is None or email == "":
        return None
    if not isinstance(email, str) or len(email) > MAX_EMAIL or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise invalid(f"invalid e-mail address {str(email)[:80]!r}")
    return email


def check_password(password: str, cost: int = DEFAULT_COST) -> str:
    """The bcrypt hash of ``password`` (bcrypt's 72-byte limit and an empty password refused)."""
    if not isinstance(password, str):
        raise invalid("the password must be a string")
    try:
        return hash_password(password, cost)
    except ValueError as e:
        raise invalid(str(e)) from None


def check_tag_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    if isinstance(patterns, str) or not isinstance(patterns, list | tuple):
        raise invalid("immutable_tags must be a list of tag patterns")
    found = tuple(patterns)
    if len(found) > MAX_TAG_PATTERNS:
        raise invalid(f"at most {MAX_TAG_PATTERNS} immutable tag patterns")
    for pattern in found:
        if not isinstance(pattern, str) or not TAG_PATTERN_RE.fullmatch(pattern):
            raise invalid(f"bad tag pattern {str(pattern)[:80]!r} (letters, digits, _ . - and the wildcards * ?)")
    return found


def user_view(user: UserRecord) -> dict[str, Any]:
    """What the change log records of a user: never the password hash."""
    return {"name": user.name, "email": user.email, "admin": user.admin, "disabled": user.disabled}


def namespace_view(ns: NamespaceRecord) -> dict[str, Any]:
    return {"path": ns.path, "public": ns.public, "quota": ns.quota, "retention": ns.retention,
            "immutable_tags": list(ns.immutable_tags)}


def token_view(record: TokenRecord) -> dict[str, Any]:
    """A token as listings and the change log show it: never its secret or digest."""
    return {
        "id": record.id, "name": record.name, "owner": record.owner, "scopes": list(record.scopes),
        "repositories": list(record.repositories) if record.repositories is not None else None,
        "created": iso(record.created), "created_by": record.created_by, "expires": iso(record.expires),
        "last_used": iso(record.last_used), "last_address": record.last_address,
    }


def robot_view(robot: RobotRecord) -> dict[str, Any]:
    return {"name": robot_name(robot.namespace, robot.name), "namespace": robot.namespace, "robot": robot.name,
            "actions": list(robot.actions), "description": robot.description, "created": iso(robot.created),
            "created_by": robot.created_by}


def iso(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None
