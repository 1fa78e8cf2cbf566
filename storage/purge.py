"""Removal of abandoned uploads (Distribution's ``uploadpurging``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.tree import RepositoryTree

log = logging.getLogger("moorage.purge")


Purged = Callable[[str, str], Awaitable[None]]  # (repository, upload id): a session was removed


async def purge_uploads(driver: StorageDriver, older_than: float, dry_run: bool = False,
                        on_purged: Purged | None = None) -> list[str]:
    """Delete uploads started more than ``older_than`` seconds ago; returns their directories.

    Visits every repository with upload sessions, including those whose first push never finished.
    """
    cutoff = time.time() - older_than
    tree = RepositoryTree(driver)
    purged: list[str] = []
    async for name in tree.repositories(marker=paths.UPLOADS):
        purged += await purge_repository(tree, name, cutoff, dry_run, on_purged)
    return purged


async def purge_repository(tree: RepositoryTree, name: str, cutoff: float, dry_run: bool,
                           on_purged: Purged | None = None) -> list[str]:
    driver = tree.driver
    purged = []
    for upload_id in await tree.uploads(name):
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
        if on_purged is not None:
            await on_purged(name, upload_id)
    return purged
