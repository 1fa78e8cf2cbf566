"""Users of a directory (``auth.ldap``) or a single sign-on (``auth.oidc``) in the database.

At a user's first login they get a database user without a password (their source checks it), so they
can own access tokens and namespaces and hold roles like everyone else. Every login records the teams
their groups map to (``external_users``), written only when something changed; the teams count for
the rules (``team:NAME``) and namespace roles on every replica and after a restart, also when the user
comes back with an access token instead of their password. For a single sign-on the provider's stable
subject (issuer and ``sub``) is kept: a name that the provider gives to someone else later is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from auth.credentials import Identity
from auth.policy import PolicySnapshot
from auth.terms import Refused, check_name, namespace_view
from storage.database import Cached, Database, DatabaseUnavailable, machine
from storage.database import identity as store
from storage.database.records import ChangeRecord, ExternalRecord

log = logging.getLogger("moorage.auth")
EXTERNAL = ("ldap", "oidc")  # sources whose users are kept here
Listener = Callable[[ChangeRecord], None]


class SubjectMismatch(Exception):
    """The name belongs to another identity: another subject at the provider, or a local account."""


class ExternalAccounts:
    def __init__(self, db: Database, policy: Cached[PolicySnapshot] | None = None) -> None:
        """``policy``: auth.database's, which knows the users this records (reloaded after a write)."""
        self.db = db
        self.policy = policy
        # followed from the start: once the feed runs (for this or any other cache), every worker has the
        # recorded teams, also of users it never saw log in
        self.cache = db.feed.follow(Cached(db, machine.all_external, "external users"))
        self.listeners: list[Listener] = []
        self._unknown: dict[str, int | None] = {}  # users not recorded, at the cache's version then

    async def records(self) -> dict[str, ExternalRecord]:
        self.db.feed.start()
        return await self.cache.fresh(1.5)

    def teams(self, user: str) -> frozenset[str]:
        """The teams recorded at the user's latest login (as far as this process has read them)."""
        known = self.cache.peek() or {}
        record = known.get(user)
        return record.teams if record is not None else frozenset()

    async def record(self, name: str) -> ExternalRecord | None:
        return (await self.records()).get(name)

    async def arrived(self, identity: Identity) -> None:
        """After a login: the database user and their teams, written only when something changed. A
        database that is down does not stop the login (the next one writes it). An access token's login:
        its owner's recorded teams read, as they may have logged in with their password on another
        replica or worker a moment ago."""
        if identity.scope is not None:
            await self.recall(identity.name)
            return
        if identity.source not in EXTERNAL:
            return
        try:
            known = (await self.records()).get(identity.name)
            if known is not None and known.subject and identity.subject and known.subject != identity.subject:
                raise SubjectMismatch(f"the name {identity.name!r} belongs to another account at the identity "
                                      "provider")
            if known is not None and known.teams == identity.teams and known.source == identity.source:
                return
            changes = await self.db.write(lambda conn: self._save(conn, identity))
            await self.cache.refresh()
            if self.policy is not None:  # the new user's stamp, before a web UI session is bound to it
                await self.policy.refresh()
        except DatabaseUnavailable as e:
            log.warning("%s user %s not recorded in the database: %s", identity.source, identity.name, e)
            return
        except IntegrityError:
            return  # another replica recorded the same login at the same moment
        except Refused as e:
            log.warning("%s user %r not recorded in the database: %s", identity.source, identity.name, e.message)
            return
        except SubjectMismatch as e:
            if identity.subject is not None:
                raise  # a single sign-on: refused (the password sources decide their own names)
            log.warning("%s user not recorded in the database: %s", identity.source, e)
            return
        for change in changes:
            for listener in self.listeners:
                listener(change)

    async def recall(self, name: str) -> None:
        """The teams recorded for ``name``, current within the cache's bound; read from the database when
        the user is not known yet (recorded a moment ago on another replica or worker), once per version
        of the cache (a token's owner of the htpasswd file is never known: one counter read per change, not
        per request). A database that is down leaves the teams as last read."""
        try:
            if name in await self.records() or self._unknown.get(name) == self.cache.version:
                return
            await self.cache.refresh()  # reads the counter after this call began: the other's write is in
            if name not in (self.cache.peek() or {}):
                self._unknown[name] = self.cache.version
        except DatabaseUnavailable as e:
            log.warning("teams of %s not read from the database: %s", name, e)

    def _save(self, conn: Connection, identity: Identity) -> list[ChangeRecord]:
        changes = []
        user = store.find_user(conn, identity.name)
        if user is not None and user.password is not None:
            raise SubjectMismatch(f"the name {identity.name!r} belongs to a local account with a password")
        if user is None:
            user = store.insert_user(conn, check_name("user", identity.name), None, identity.email)
            changes.append(store.record_change(conn, identity.name, None, "user.create", identity.name,
                                               after={"name": user.name, "email": user.email,
                                                      "source": identity.source}))
            if store.find_namespace(conn, user.name) is None:  # their personal namespace, as a local user's
                ns = store.insert_namespace(conn, user.name, personal_user_id=user.id)
                changes.append(store.record_change(conn, identity.name, None, "namespace.create", ns.path, ns.path,
                                                   after=namespace_view(ns)))
        machine.save_external(conn, user.id, identity.source, identity.subject, identity.teams)
        return changes
