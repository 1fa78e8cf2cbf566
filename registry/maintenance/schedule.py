"""Scheduled maintenance inside ``moorage serve``: every ``storage.maintenance.gc`` interval, the
retention policies (the file's, then the database's namespaces', as they stand when the run starts)
expire tags and garbage collection frees what nothing needs any more.
Every replica schedules it; the lease in the storage lets one run at a time."""

from __future__ import annotations

import asyncio
import logging
import time

from registry.instance import Registry
from storage.driver import StorageUnavailable
from storage.gc import GarbageCollector, GCBusy
from storage.metrics import gc_finished

log = logging.getLogger("moorage.gc")


async def collect_periodically(registry: Registry) -> None:
    settings = registry.config.storage.gc
    while True:
        await asyncio.sleep(settings.interval)
        mode = "gc"
        started = time.monotonic()
        try:
            retention = await registry.retention()
            mode = "retention" if retention is not None else "gc"
            collector = GarbageCollector(registry.driver, delete_untagged=settings.deleteuntagged,
                                         dry_run=settings.dryrun, grace=settings.grace,
                                         expire=retention,
                                         ledger=registry.ledger)
            result = await collector.run()
            gc_finished(mode, result.blobs_removed, result.manifests_removed, result.bytes_freed, result.seconds)
            log.info("garbage collection%s: %s", " (dry run)" if settings.dryrun else "", result.summary())
        except GCBusy as e:
            log.info("garbage collection skipped: %s", e)
        except StorageUnavailable as e:
            gc_finished(mode, 0, 0, 0, time.monotonic() - started, error=True)
            log.warning("garbage collection failed: %s", e.reason or e)
        except Exception:
            gc_finished(mode, 0, 0, 0, time.monotonic() - started, error=True)
            log.exception("garbage collection failed")
