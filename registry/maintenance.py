"""Scheduled maintenance inside ``moorage serve``: every ``storage.maintenance.gc`` interval, the
retention policies expire tags and garbage collection frees what nothing needs any more.
Every replica schedules it; the lease in the storage lets one run at a time."""

from __future__ import annotations

import asyncio
import logging

from registry.instance import Registry
from storage.gc import GarbageCollector, GCBusy

log = logging.getLogger("moorage.gc")


async def collect_periodically(registry: Registry) -> None:
    settings = registry.config.storage.gc
    while True:
        await asyncio.sleep(settings.interval)
        try:
            retention = registry.config.storage.retention
            collector = GarbageCollector(registry.driver, delete_untagged=settings.deleteuntagged,
                                         dry_run=settings.dryrun, grace=settings.grace,
                                         expire=retention,
                                         ledger=registry.blobs.ledger)
            result = await collector.run()
            log.info("garbage collection%s: %s", " (dry run)" if settings.dryrun else "", result.summary())
        except GCBusy as e:
            log.info("garbage collection skipped: %s", e)
        except Exception:
            log.exception("garbage collection failed")
