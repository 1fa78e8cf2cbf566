"""Personal access tokens and robot accounts: the secrets that work wherever a password does, with a
scope, an expiry and a record of their last use.

**Secrets.** ``moorage_pat_<id>_<43 random characters>`` (robots' tokens: ``moorage_robot_``): a fixed
prefix that secret scanners can look for, the public id (the database key, so checking a secret is one
lookup), and 256 random bits. Only a keyed hash is stored: HMAC-SHA256 keyed with the token's id. A
fast hash is right here, unlike for passwords: a 256-bit random secret cannot be guessed whatever the
hash costs, so bcrypt's slowness would protect nothing and would cost a quarter second of CPU on
every request (clients send Basic credentials with each one); the key makes each digest specific to its
token, and digests are compared in constant time.

**Scope.** ``pull``, ``pull,push`` or ``pull,push,delete``, optionally only on repositories matching
globs. At creation the scope may not exceed what the creator may do where the globs point; at use it is
cut down to what the owner may do then (auth.credentials.Scope), so a user who loses rights loses them
for their tokens too. A robot belongs to a namespace, not to a person: its actions there are fixed when
it is made, and removing the person who made it changes nothing.

**Freshness.** Tokens are read from a cache that follows the change feed (storage/database/feed.py):
every use checks against a copy confirmed within 1.5 s, so a revocation on any replica stops the token
everywhere within 2 s. Last use (time and address) is recorded in memory and written in batches every
``FLUSH_INTERVAL`` seconds (never one database write per request); a use from an address the token was
not last used from goes to the audit trail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from auth import roles
from auth.credentials import CredentialRefused, Identity, Scope, Verdict
from auth.manage import Authority, recorded_write
from auth.policy import MAX_AGE
from auth.rules import valid_repository
from auth.settings import AccessTokenSettings
from auth.terms import (
    MAX_NAME,
    NAME_PATTERN,
    Caller,
    Refused,
    check_name,
    check_path,
    conflict,
    denied,
    invalid,
    iso,
    not_found,
    robot_view,
    token_view,
)
from storage.background import stop
from storage.database import Cached, Database, DatabaseUnavailable, machine
from storage.database import identity as store
from storage.database.records import ChangeRecord, RobotRecord, TokenRecord, now, robot_name, split_robot_name

log = logging.getLogger("moorage.auth")

PAT_PREFIX = "moorage_pat_"
ROBOT_PREFIX = "moorage_robot_"
SECRET_RE = re.compile(r"moorage_(?:pat|robot)_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
SCOPES = ({"pull"}, {"pull", "push"}, {"pull", "push", "delete"})
GLOB_RE = re.compile(r"[a-z0-9._/*?-]+")
MAX_GLOBS = 20
FLUSH_INTERVAL = 10.0  # seconds between the batched writes of last uses

Actions = Callable[[str, str], frozenset[str]]  # (user, repository) -> what the policy lets them do there
Listener = Callable[[ChangeRecord], None]


def new_secret(robot: bool) -> tuple[str, str]:
    """A fresh ``(id, secret)``."""
    token_id = secrets.token_hex(8)
    return token_id, f"{ROBOT_PREFIX if robot else PAT_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def secret_id(secret: str) -> str | None:
    """The token id inside ``secret``; None when it is no access token."""
    found = SECRET_RE.fullmatch(secret)
    return found.group(1) if found else None


def digest(token_id: str, secret: str) -> str:
    return hmac.new(token_id.encode(), secret.encode(), hashlib.sha256).hexdigest()


def check_scopes(scopes: Any) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",")]
    if not isinstance(scopes, list | tuple) or set(scopes) not in SCOPES or len(set(scopes)) != len(scopes):
        raise invalid("scopes must be one of [pull], [pull, push], [pull, push, delete]")
    return tuple(a for a in ("pull", "push", "delete") if a in scopes)


def check_globs(repositories: Any) -> tuple[str, ...] | None:
    if repositories is None:
        return None
    if isinstance(repositories, str) or not isinstance(repositories, list | tuple) or not repositories:
        raise invalid("repositories must be a non-empty list of repository globs (payments/**), or left out")
    if len(repositories) > MAX_GLOBS:
        raise invalid(f"at most {MAX_GLOBS} repository globs")
    for glob in repositories:
        if not isinstance(glob, str) or not GLOB_RE.fullmatch(glob) or not valid_repository(example(glob)):
            raise invalid(f"bad repository glob {str(glob)[:80]!r} (lowercase names, / * ** ?)")
    return tuple(repositories)


def example(glob: str) -> str:
    """A repository the glob matches, standing for all it matches when the creator's rights are checked."""
    return glob.replace("**", "x").replace("*", "x").replace("?", "x")


def check_expiry(value: Any, settings: AccessTokenSettings, clock: Callable[[], datetime.datetime]
                 ) -> datetime.datetime | None:
    if value is None:
        if settings.requireexpiry:
            raise invalid("this registry requires an expiry (expires) on every token")
        if settings.maxlifetime:
            return clock() + datetime.timedelta(seconds=settings.maxlifetime)
        return None
    if isinstance(value, datetime.datetime):
        when = value
    else:
        try:
            when = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise invalid(f"expires: not an RFC 3339 time ({str(value)[:40]!r}), e.g. 2027-01-01T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    if when <= clock():
        raise invalid(f"expires: {iso(when)} is in the past")
    if settings.maxlifetime and when > clock() + datetime.timedelta(seconds=settings.maxlifetime):
        raise invalid(f"expires: at most {settings.maxlifetime / 86400:g} days from now on this registry")
    return when


def check_token_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name):
        raise invalid(f"invalid token name {str(name)[:80]!r}: lowercase letters, digits and . _ - between them")
    return name


@dataclass(frozen=True, slots=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown once: only its hash is kept


class UseLog:
    """Last uses waiting to be written: one batched write every FLUSH_INTERVAL, not one per request."""

    def __init__(self, db: Database, listeners: list[Listener]) -> None:
        self.db = db
        self.listeners = listeners  # told of first uses from a new address, once written
        self.pending: dict[str, tuple[datetime.datetime, str]] = {}
        self.seen: dict[str, str] = {}  # token id -> the address it was last used from (as far as we know)
        self.new_addresses: list[tuple[TokenRecord, str]] = []
        self._task: asyncio.Task[None] | None = None

    def used(self, record: TokenRecord, address: str) -> None:
        known = self.seen.get(record.id, record.last_address)
        if address and address != known:
            self.new_addresses.append((record, address))
        self.seen[record.id] = address
        self.pending[record.id] = (now(), address)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_INTERVAL)
        await self.flush()

    async def flush(self) -> None:
        uses, self.pending = self.pending, {}
        news, self.new_addresses = self.new_addresses, []
        if not uses:
            return

        def work(conn: Connection) -> list[ChangeRecord]:
            machine.record_uses(conn, uses)
            return [store.record_change(conn, record.owner, address, "token.use", record.id,
                                        record.robot.namespace if record.robot else None,
                                        before={"last_address": record.last_address},
                                        after={"address": address, "token": record.name})
                    for record, address in news]

        try:
            recorded = await self.db.write(work, policy=False)
        except DatabaseUnavailable as e:
            log.warning("token last uses not recorded (%d tokens): %s", len(uses), e)
            return
        for change in recorded:
            log.info("token %s of %s used from a new address %s", change.target, change.actor, change.address)
            for listener in self.listeners:
                listener(change)

    async def close(self) -> None:
        if self._task is not None:
            await stop(self._task)


class AccessTokens:
    """The credential source (``verify``) and the management of tokens and robots (one behaviour for
    the API, the CLI and the web UI)."""

    kind = "token"

    def __init__(self, db: Database, settings: AccessTokenSettings, actions: Actions,
                 file_admin: Callable[[str | None], bool] = lambda user: False,
                 clock: Callable[[], datetime.datetime] = now) -> None:
        """``actions``: what the registry's policy lets a user do on a repository (the access
        controller's), for the checks at creation."""
        self.db = db
        self.settings = settings
        self.actions = actions
        self.file_admin = file_admin
        self.clock = clock
        self.cache: Cached[dict[str, TokenRecord]] = Cached(db, machine.all_tokens, "access tokens")
        self.listeners: list[Listener] = []
        self.uses = UseLog(db, self.listeners)
        self._known: set[str] = set()  # users known to have a row in the database
        self._following = False

    # --- the credential source -----------------------------------------------------------------------

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        token_id = secret_id(password)
        if token_id is None:
            return Verdict.UNKNOWN
        tokens = await self.current_tokens()
        record = tokens.get(token_id)
        if record is None:  # made a moment ago, maybe on another replica: look once more
            await self.cache.refresh()
            record = (await self.current_tokens()).get(token_id)
        if record is None or not hmac.compare_digest(record.digest, digest(token_id, password)):
            return Verdict.REFUSED
        if record.owner != user.lower() or record.owner_disabled:
            return Verdict.REFUSED
        self.check_alive(record)
        self.uses.used(record, address)
        return self.identity(record)

    async def current_tokens(self) -> dict[str, TokenRecord]:
        """Every token, confirmed current within MAX_AGE. The cache follows the change feed from its first
        use on (a registry whose tokens are never used never opens the database for them)."""
        if not self._following:
            self._following = True
            self.db.feed.follow(self.cache)
            self.db.feed.start()
        return await self.cache.fresh(MAX_AGE)

    async def current(self, user: str) -> Identity | None:
        return None  # tokens log nobody in to a session

    def stamp(self, user: str) -> str | None:
        return None

    async def by_id(self, token_id: str) -> Identity | None:
        """The identity a refresh token bound to a token stands for now (None: revoked); raises
        CredentialRefused when it expired."""
        record = (await self.current_tokens()).get(token_id)
        if record is None or record.owner_disabled:
            return None
        self.check_alive(record)
        return self.identity(record)

    def check_alive(self, record: TokenRecord) -> None:
        moment = self.clock()
        if record.expires is not None and record.expires <= moment:
            raise CredentialRefused(f"access token {record.name!r} expired at {iso(record.expires)}")
        unused = self.settings.unusedexpiry
        last = self.uses.pending.get(record.id, (record.last_used or record.created, ""))[0]
        if unused and last + datetime.timedelta(seconds=unused) <= moment:
            raise CredentialRefused(f"access token {record.name!r} expired: unused for more than "
                                    f"{unused / 86400:g} days (last used {iso(last)})")

    def identity(self, record: TokenRecord) -> Identity:
        actions = frozenset(record.scopes)
        repositories = record.repositories
        if record.robot is not None:
            actions &= frozenset(record.robot.actions)
            repositories = repositories or (f"{record.robot.namespace}/**",)
        scope = Scope(actions, repositories, record.id, robot=record.robot is not None)
        return Identity(record.owner, self.kind, scope=scope)

    async def close(self) -> None:
        await self.uses.flush()
        await self.uses.close()

    # --- management ----------------------------------------------------------------------------------

    async def create(self, caller: Caller, name: Any, scopes: Any, repositories: Any = None, expires: Any = None,
                     robot: str | None = None, user: str | None = None) -> NewToken:
        """A token for the caller (an admin or the operator: for ``user``), or (``robot``: its full name)
        for a robot of a namespace the caller owns."""
        name = check_token_name(name)
        wanted = check_scopes(scopes)
        globs = check_globs(repositories)
        when = check_expiry(expires, self.settings, self.clock)
        owner = user or caller.name
        if robot is None and owner is None:
            raise denied("log in to create access tokens")
        if robot is None and owner is not None and globs is not None:
            for glob in globs:
                allowed = self.actions(owner, example(glob))
                missing = [a for a in wanted if a not in allowed and "*" not in allowed]
                if missing:
                    raise denied(f"you may not {', '.join(missing)} on {glob} (a token's scope cannot exceed "
                                 f"your own rights)")
        token_id, secret = new_secret(robot is not None)

        def work(a: Authority) -> TokenRecord:
            owner_user = owner_robot = None
            if robot is not None:
                found = self._robot_for(a, robot, manage=True)
                if globs is not None and any(not glob.startswith(f"{found.namespace}/") for glob in globs):
                    raise denied(f"a robot's tokens stay inside its namespace {found.namespace}/")
                extra = set(wanted) - set(found.actions)
                if extra:
                    raise denied(f"robot {robot} may not {', '.join(sorted(extra))}")
                owner_robot = found.id
                count = machine.count_tokens(a.conn, robot_id=found.id)
            else:
                if owner != caller.name:
                    a.require_admin("create tokens for other users")
                found_user = store.find_user(a.conn, owner or "")
                if found_user is None:  # a user of the htpasswd file or a directory: their tokens need a row
                    found_user = store.insert_user(a.conn, check_name("user", owner or ""), None)
                    a.record("user.create", found_user.name, after={"name": found_user.name, "email": None})
                owner_user = found_user.id
                count = machine.count_tokens(a.conn, user_id=found_user.id)
            if count >= self.settings.peruser:
                raise Refused(403, "DENIED", f"{robot or owner} has {count} access tokens, the most allowed "
                              f"(auth.accesstokens.peruser): revoke some first")
            try:
                machine.insert_token(a.conn, token_id, name, digest(token_id, secret), wanted, globs, when,
                                     caller.who, user_id=owner_user, robot_id=owner_robot)
            except IntegrityError:
                raise conflict(f"{robot or owner} already has a token named {name!r}") from None
            record = machine.find_token(a.conn, token_id)
            assert record is not None
            a.record("token.create", f"{record.owner}/{name}", record.robot.namespace if record.robot else None,
                     after=token_view(record))
            return record

        record = await self._write(caller, work)
        return NewToken(record, secret)

    async def list(self, caller: Caller, user: str | None = None, robot: str | None = None) -> list[TokenRecord]:
        """The caller's own tokens; an admin's view of ``user``'s; a robot's (for its namespace's owners)."""
        def work(a: Authority) -> list[TokenRecord]:
            if robot is not None:
                found = self._robot_for(a, robot, manage=True)
                return machine.tokens_of(a.conn, robot_id=found.id)
            name = user or caller.name
            if name is None:
                raise denied("log in to list access tokens")
            if name != caller.name:
                a.require_admin("see other users' tokens")
            found_user = store.find_user(a.conn, name)
            if found_user is None and name == caller.name:
                return []  # a user of the htpasswd file before their first token
            if found_user is None:
                raise not_found("user", name)
            return machine.tokens_of(a.conn, user_id=found_user.id)

        return self._with_pending_uses(await self.db.read(lambda conn: work(self._authority(conn, caller))))

    async def overview(self, caller: Caller, namespace: str | None = None, limit: int = 100, offset: int = 0
                       ) -> tuple[list[RobotRecord], list[TokenRecord]]:
        """The machine identities an admin oversees: every robot and (a page of) every token of the
        registry, newest first; of ``namespace``, its robots and their tokens, for its owners too."""
        path = check_path(namespace) if namespace is not None else None

        def work(a: Authority) -> tuple[list[RobotRecord], list[TokenRecord]]:
            if path is None:
                a.require_admin("see every access token")
            elif a.manages(path) != roles.OWNER:
                raise denied(f"only owners of {path} see its robots")
            return (machine.list_robots(a.conn, path),
                    machine.tokens_of(a.conn, namespace=path, limit=limit, offset=offset))

        robots, records = await self.db.read(lambda conn: work(self._authority(conn, caller)))
        return robots, self._with_pending_uses(records)

    async def revoke(self, caller: Caller, token_id: str) -> TokenRecord:
        """By its owner, an admin, or (a robot's token) an owner of the robot's namespace."""
        def work(a: Authority) -> TokenRecord:
            record = machine.find_token(a.conn, token_id)
            if record is None or not self._may_manage(a, record):
                raise not_found("access token", token_id)
            machine.delete_token(a.conn, token_id)
            a.record("token.revoke", f"{record.owner}/{record.name}",
                     record.robot.namespace if record.robot else None, before=token_view(record))
            return record

        return await self._write(caller, work)

    # --- robots --------------------------------------------------------------------------------------

    async def create_robot(self, caller: Caller, namespace: str, name: Any, actions: Any,
                           description: str | None = None) -> RobotRecord:
        path = check_path(namespace)
        name = check_token_name(name)
        granted = check_scopes(actions)
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            raise invalid("description: at most 255 characters")

        def work(a: Authority) -> RobotRecord:
            ns = store.find_namespace(a.conn, path)
            if ns is None:
                raise not_found("namespace", path)
            if a.manages(path) != roles.OWNER:
                raise denied(f"only owners of {path} create its robots")
            if machine.find_robot(a.conn, path, name) is not None:
                raise conflict(f"robot {robot_name(path, name)} exists")
            try:
                machine.insert_robot(a.conn, ns.id, name, granted, description, caller.who)
            except IntegrityError:
                raise conflict(f"robot {robot_name(path, name)} exists") from None
            robot = machine.find_robot(a.conn, path, name)
            assert robot is not None
            a.record("robot.create", robot_name(path, name), path, after=robot_view(robot))
            return robot

        return await self._write(caller, work)

    async def list_robots(self, caller: Caller, namespace: str) -> list[RobotRecord]:
        path = check_path(namespace)

        def work(a: Authority) -> list[RobotRecord]:
            if a.manages(path) != roles.OWNER:
                raise denied(f"only owners of {path} see its robots")
            return machine.list_robots(a.conn, path)

        return await self.db.read(lambda conn: work(self._authority(conn, caller)))

    async def remove_robot(self, caller: Caller, full_name: str) -> None:
        def work(a: Authority) -> None:
            robot = self._robot_for(a, full_name, manage=True)
            machine.delete_robot(a.conn, robot.id)
            a.record("robot.remove", full_name, robot.namespace, before=robot_view(robot))

        await self._write(caller, work)

    # --- plumbing ------------------------------------------------------------------------------------

    def _authority(self, conn: Connection, caller: Caller) -> Authority:
        return Authority(conn, caller, self.file_admin)

    def _robot_for(self, a: Authority, full_name: str, manage: bool) -> RobotRecord:
        parts = split_robot_name(full_name)
        robot = machine.find_robot(a.conn, *parts) if parts else None
        if robot is None or (manage and a.manages(robot.namespace) != roles.OWNER):
            raise not_found("robot", full_name)
        return robot

    def _may_manage(self, a: Authority, record: TokenRecord) -> bool:
        if record.robot is not None:
            return a.manages(record.robot.namespace) == roles.OWNER
        return record.owner == a.caller.name or a.admin

    def _with_pending_uses(self, records: list[TokenRecord]) -> list[TokenRecord]:
        """Listings show last uses not yet written."""
        out = []
        for record in records:
            pending = self.uses.pending.get(record.id)
            if pending is not None:
                record = dataclasses.replace(record, last_used=pending[0], last_address=pending[1])
            out.append(record)
        return out

    async def _write(self, caller: Caller, work: Callable[[Authority], Any]) -> Any:
        result = await recorded_write(self.db, caller, self.file_admin, work, self.listeners)
        if self._following:
            await self.cache.refresh()  # this replica at once; the others within the feed's 2 s
        return result
