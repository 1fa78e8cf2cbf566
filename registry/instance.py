"""``Registry``: the stores and policies of one registry instance, built once from the config; it hands
the /v2 handlers the repository a request names (local, or mirrored from an upstream)."""

from __future__ import annotations

from dataclasses import dataclass

from auth.base import AccessController
from auth.factory import build_access_controller, build_credentials
from auth.login import Login, build_login
from registry.config import Config
from registry.mediatypes import describe_referrer
from registry.mirror.repository import MirroredRepository
from registry.mirror.source import UpstreamSource
from registry.repository import Repository
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.database import Database
from storage.driver import StorageDriver
from storage.driver.factory import build_driver
from storage.driver.instrumented import InstrumentedDriver
from storage.gc import LEASE_NAME
from storage.lease import held
from storage.manifests import ManifestStore, TagStore
from storage.referrers import ReferrersIndex
from storage.uploads import UploadStore
from storage.usage import UsageLedger


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
    mirror: UpstreamSource | None = None  # pull-through mirror of the ``proxy`` upstreams, when configured
    database: Database | None = None  # opened when first needed; None: S3 storage without database.url

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
        database = open_database(config)
        credentials = build_credentials(config.auth)  # one chain and brake for every login path
        access = build_access_controller(config.auth, credentials)
        login = build_login(config.auth, access, credentials)
        # a push marks what it relies on at most once per quarter of GC's grace window (docs/gc.md)
        ledger = UsageLedger(driver) if config.storage.quotas is not None else None
        blobs = BlobStore(driver, touch_interval=config.storage.gc.grace / 4, ledger=ledger)
        manifests = ManifestStore(driver, blobs)
        uploads = UploadStore(driver, blobs)
        tags = TagStore(driver)
        return cls(
            config=config,
            driver=driver,
            blobs=blobs,
            uploads=uploads,
            manifests=manifests,
            tags=tags,
            referrers=ReferrersIndex(driver, manifests, describe_referrer),
            catalog=Catalog(driver),
            access=access,
            login=login,
            mirror=UpstreamSource.build(config.proxy, driver, blobs, uploads, manifests, tags),
            database=database,
        )

    def repository(self, name: str, ns: str | None = None) -> Repository:
        """The repository a request names: a mirrored one when ``name`` (or containerd's ``ns``) maps
        to an upstream, which may give it another local name; else one served from storage alone."""
        if self.mirror is not None:
            route = self.mirror.route(name, ns)
            if route is not None:
                return MirroredRepository(self.mirror, route)
        return Repository(name, self.driver, self.blobs, self.manifests, self.tags)

    async def check_quota(self, name: str, adding: int) -> None:
        """Refuse (DENIED) a push that would take the namespace of ``name`` over its quota."""
        if self.config.storage.quotas is not None and self.blobs.ledger is not None:
            await self.config.storage.quotas.check(self.blobs.ledger, name, adding)

    async def gc_running(self) -> bool:
        """Whether some process holds the garbage collection lease now."""
        return await held(self.driver, LEASE_NAME) is not None

    async def close(self) -> None:
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
    return Database.from_settings(config.database, root)
