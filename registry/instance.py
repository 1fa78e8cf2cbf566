"""``Registry``: the stores and policies of one registry instance, built once from the config; it hands
the /v2 handlers the repository a request names (local, or mirrored from an upstream) to read, and the
one ``RepositoryWriter`` every change goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth.base import AccessController
from auth.factory import build_access_controller, build_access_tokens, build_credentials
from auth.login import Login, build_login
from auth.policy import MAX_AGE, DatabasePolicy, PolicySnapshot, policy_cache
from auth.rules import AccessRules
from configkit import ConfigError
from registry.config import Config
from registry.maintenance.retention import Retention, check_namespace_retention, with_namespaces
from registry.mediatypes import describe_referrer
from registry.repository import Repository
from registry.writes.events import EventBus
from registry.writes.namespaces import ImmutableTags, NamespaceQuotas
from registry.writes.policy import ActorScope, DeletesDisabled, WritePolicy
from registry.writes.quota import QuotaGuard
from registry.writes.writer import RepositoryWriter
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.database import Cached
from storage.driver import StorageDriver
from storage.driver.factory import build_driver
from storage.driver.instrumented import InstrumentedDriver
from storage.manifests import ManifestStore, TagStore
from storage.referrers import ReferrersIndex
from storage.sessions import SessionStore, StorageSessions
from storage.uploads import UploadStore
from storage.usage import UsageLedger

if TYPE_CHECKING:
    from auth.manage import Management
    from auth.tokens import AccessTokens
    from registry.mirror.source import UpstreamSource
    from storage.database import Database


@dataclass(slots=True)
class Registry:
    config: Config
    driver: StorageDriver
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    tags: TagStore
    referrers: ReferrersIndex
    catalog: Catalog
    access: AccessController
    login: Login  # the same users and rights for web UI sessions and /v1/search
    events: EventBus  # one event per change (and per pull): notifications, audit, metrics subscribe
    writer: RepositoryWriter
    ledger: UsageLedger | None  # what each namespace stores and uploads, with quotas (GC reconciles it)
    sessions: SessionStore  # web UI sessions, shared by every replica: ``sessions.end_all(user)`` ends a user's
    mirror: UpstreamSource | None = None  # pull-through mirror of the ``proxy`` upstreams, when configured
    database: Database | None = None  # opened when first needed; None: nobody logs in, or S3 without database.url
    tokens: AccessTokens | None = None  # personal access tokens and robots (with a database and logins)
    policy: Cached[PolicySnapshot] | None = None  # auth.database: the access policy, following the change feed
    management: Management | None = None  # auth.database: users, teams and namespaces (auth/manage.py)

    @classmethod
    def build(cls, config: Config, driver: StorageDriver | None = None) -> Registry:
        if driver is None:
            driver = build_driver(
                config.storage.driver,
                config.storage.parameters,
                redirect=not config.storage.redirect_disabled,
            )
        if config.metrics_enabled:
            driver = InstrumentedDriver(driver)
        database = policy = management = None
        if config.auth.database is not None:
            database = open_database(config)
            if database is None:
                raise ConfigError("database.url: required with s3 storage (auth.database keeps users in it)")
            policy = policy_cache(database)
            management = build_management(config, database, policy)
        credentials = build_credentials(config.auth, policy)  # one chain and brake for every login path
        if database is None and credentials.enabled:
            database = open_database(config)  # the logins' tokens, web UI sessions and shared brake counts
        if database is not None and credentials.brake is not None:
            from auth.shared_failures import SharedFailures  # SQLAlchemy only with a database

            credentials.brake.share(SharedFailures(database))  # one count for every replica and worker
        access = build_access_controller(config.auth, credentials, policy)
        login = build_login(config.auth, access, credentials)
        tokens = build_access_tokens(config.auth, database, access, credentials, policy)
        rules = getattr(access, "rules", None)
        namespaces = rules if isinstance(rules, DatabasePolicy) else None  # the database's namespace settings
        quotas = NamespaceQuotas(namespaces, config.storage.quotas) if namespaces is not None else config.storage.quotas
        ledger = UsageLedger(driver) if quotas is not None else None
        blobs = BlobStore(driver)
        manifests = ManifestStore(driver, blobs)
        uploads = UploadStore(driver, blobs)
        tags = TagStore(driver)
        referrers = ReferrersIndex(driver, manifests, describe_referrer)
        events = EventBus()
        policies: list[WritePolicy] = [ActorScope()]
        if not config.storage.delete_enabled:
            policies.insert(0, DeletesDisabled())
        if namespaces is not None:
            policies.append(ImmutableTags(namespaces))
        quota = QuotaGuard(ledger, quotas) if ledger is not None and quotas is not None else None
        writer = RepositoryWriter(config, blobs, uploads, manifests, tags, referrers, events, policies, quota)
        mirror = None
        if config.proxy.mirror() is not None:
            from registry.mirror.source import UpstreamSource  # httpx only for a mirror

            mirror = UpstreamSource.build(config.proxy, writer)
        if mirror is not None:
            writer.mirrored = mirror.refusal
        return cls(
            config=config,
            driver=driver,
            blobs=blobs,
            uploads=uploads,
            manifests=manifests,
            tags=tags,
            referrers=referrers,
            catalog=Catalog(driver),
            access=access,
            login=login,
            events=events,
            writer=writer,
            ledger=ledger,
            sessions=session_store(database, driver),
            mirror=mirror,
            database=database,
            tokens=tokens,
            policy=policy,
            management=management,
        )

    def repository(self, name: str, ns: str | None = None) -> Repository:
        """The repository a request names: a mirrored one when ``name`` (or containerd's ``ns``) maps
        to an upstream, which may give it another local name; else one served from storage alone."""
        if self.mirror is not None:
            route = self.mirror.route(name, ns)
            if route is not None:
                from registry.mirror.repository import MirroredRepository

                return MirroredRepository(self.mirror, route)
        return self.stored(name)

    def stored(self, name: str) -> Repository:
        """The repository as storage holds it, never asking an upstream (the web UI reads this way)."""
        return Repository(name, self.driver, self.blobs, self.manifests, self.tags)

    async def retention(self) -> Retention | None:
        """The retention policies in force now: ``storage.maintenance.retention``, then the database's
        namespaces' own (``auth.database``; raises DatabaseUnavailable when it cannot be read)."""
        file = self.config.storage.retention
        if self.policy is None:
            return file
        snapshot = await self.policy.fresh(MAX_AGE)
        return with_namespaces(file, {path: ns.record.retention for path, ns in snapshot.namespaces.items()
                                      if ns.record.retention})

    async def close(self) -> None:
        brake = self.login.credentials.brake
        if brake is not None:
            await brake.settled()  # failures still being shared reach the database before it closes
        await self.login.close()
        if self.mirror is not None:
            await self.mirror.close()
        if self.database is not None:
            await self.database.close()
        await self.uploads.close()
        await self.driver.close()


def open_database(config: Config) -> Database | None:
    """The configured database, or ``moorage.db`` in the filesystem storage's root; nothing is opened
    or created until something uses it (storage/database/engine.py)."""
    root = config.storage.filesystem.rootdirectory if config.storage.filesystem is not None else None
    if config.database.url is None and root is None:
        return None
    from storage.database.engine import Database  # SQLAlchemy only for registries that keep a database

    return Database.from_settings(config.database, root)


def session_store(database: Database | None, driver: StorageDriver) -> SessionStore:
    """Web UI sessions in the database's table when the registry has a database, else in the storage."""
    if database is None:
        return StorageSessions(driver)
    from storage.database.ui_sessions import DatabaseSessions  # SQLAlchemy only with a database

    return DatabaseSessions(database)


def build_management(config: Config, database: Database, cache: Cached[PolicySnapshot] | None = None) -> Management:
    """The management service (auth/manage.py) with the file's admins and the registry's retention checks."""
    from auth.manage import Management

    rules = AccessRules(config.auth.access) if config.auth.access is not None else None
    return Management(database, cache, file_admin=rules.is_admin if rules is not None else no_admin,
                      check_retention=check_namespace_retention)


def no_admin(user: str | None) -> bool:
    return False
