"""Removal of abandoned uploads (Distribution's ``uploadpurging``)."""

from __future__ import annotations

import logging
import time

from storage import paths
from storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("moorage.purge")


async def purge_uploads(driver: StorageDriver, older_than: float, dry_run: bool = False) -> list[str]:
    """Delete uploads started more than ``older_than`` seconds ago; returns their directories.

    Walks every repository directory, including those whose first push never finished.
    """
    cutoff = time.time() - older_than
    purged: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        directory = f"{paths.REPOSITORIES}/{prefix}".rstrip("/")
        try:
            children = await driver.list(directory)
        except PathNotFound:
            continue
        if "_uploads" in children and prefix:
            purged += await purge_repository(driver, prefix.rstrip("/"), cutoff, dry_run)
        pending += [f"{prefix}{child}/" for child in children if not child.startswith("_")]
    return purged


async def purge_repository(driver: StorageDriver, name: str, cutoff: float, dry_run: bool) -> list[str]:
    try:
        uploads = await driver.list(paths.uploads_dir(name))
    except PathNotFound:
        return []
    purged = []
    for upload_id in uploads:
        directory = paths.upload_dir(name, upload_id)
        try:
            started = (await driver.stat(paths.upload_started_at(name, upload_id))).modified
        except PathNotFound:
            started = (await driver.stat(directory)).modified
        if started >= cutoff:
            continue
        purged.append(directory)
        if dry_run:
            log.info("would purge upload %s", directory)
            continue
        try:
            await driver.delete(directory)
            log.info("purged upload %s", directory)
        except PathNotFound:
            pass
    return purged
