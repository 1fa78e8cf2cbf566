"""The handshake that lets garbage collection delete while pushes go on (docs/gc.md).

Everything lives below the running collector's own directory, ``_moorage/gc/<token>/``:

* GC deletes in **batches**.  For each it writes a ``condemned/<n>`` object naming the directories it is
  about to delete (1), lists the ``relied/`` journal (2), deletes the batch's directories that no journal
  entry names (3), then removes the marker (4).
* A push that relies on stored objects while a collector runs writes one ``relied/<id>`` entry naming
  their directories (a), then lists the ``condemned/`` markers (b), waits until a marker naming one of
  them is gone, and only then checks that each is still there (c).

If a push found no marker naming a directory at (b), that marker was written after (b), so GC's listing
(2) came after the push's entry (a) and spared the directory; if it found one, it waits for (4) and its
check (c) sees whether the directory went.  Either way the push never succeeds with a deleted object.

Markers and entries belong to one run (its lease token): a collector killed in the middle leaves a
marker that no push heeds once its lease is no longer held (``GCView.running``), and the next run
removes the directories of dead runs.  Nothing is written beside the objects themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from storage import paths
from storage.driver import PathNotFound, StorageDriver
from storage.gc_watch import GCView, GCWatch
from storage.lease import LeaseLost

log = logging.getLogger("moorage.gc")
WAIT = 40.0  # a push waits at most this long for a batch naming what it relies on: longer than a dead
# collector's lease lasts (storage.gc.LEASE_TTL), so that one never refuses a push
POLL = 0.05


class SweepStuck(Exception):
    """A batch of a live collector names what a push relies on and did not finish in time."""


@dataclass(frozen=True, slots=True)
class Doomed:
    """What GC is about to delete: ``directory`` (the one a push names), then every ``(directory, files)``
    to remove with it (``files`` None: whatever the directory holds; the filesystem removes directories)."""

    directory: str
    groups: tuple[tuple[str, tuple[str, ...] | None], ...]


class Sweeper:
    """GC's side: deletes batches, sparing what a push relies on."""

    def __init__(self, driver: StorageDriver, token: str, check_lease: Callable[[], None]) -> None:
        self.driver = driver
        self.token = token
        self.check_lease = check_lease  # raises when this run must not delete any more
        self.relied: set[str] = set()
        self._read: set[str] = set()
        self._batches = 0

    async def remove(self, batch: Sequence[Doomed]) -> list[Doomed]:
        """Delete the batch except what a push relies on; returns what was deleted."""
        if not batch:
            return []
        self._batches += 1
        marker = paths.gc_condemned(self.token, f"{self._batches:08d}")
        await self.driver.put_content(marker, "\n".join(d.directory for d in batch).encode())
        await self._read_journal()
        self.check_lease()
        doomed = [d for d in batch if d.directory not in self.relied]
        await self.driver.delete_objects([group for d in doomed for group in d.groups])
        await self.driver.delete_file(marker)
        return doomed

    async def _read_journal(self) -> None:
        directory = paths.gc_relied_dir(self.token)
        try:
            names = await self.driver.list(directory)
        except PathNotFound:
            return
        for name in names:
            if name not in self._read:
                try:
                    content = await self.driver.get_content(f"{directory}/{name}")
                except PathNotFound:
                    continue
                self.relied.update(content.decode("utf-8", "replace").splitlines())
                self._read.add(name)

    async def finish(self) -> None:
        """Remove this run's directory and those that dead runs left (best effort: a push may be writing
        an entry into this run's journal right now; what stays, the next run removes).  A run that may
        have lost its lease removes nothing: the directory of the collector holding it now must stay."""
        try:
            self.check_lease()
        except LeaseLost:
            return
        try:
            runs = await self.driver.list(paths.GC_RUNS)
        except PathNotFound:
            return
        for run in runs:
            try:
                await self.driver.delete(paths.gc_run(run))
            except (PathNotFound, OSError) as e:
                log.debug("leaving %s for the next run: %s", paths.gc_run(run), e)


class PushGuard:
    """The pushing side: a push that relies on stored objects tells a running collector, and after
    storing what references them makes sure none went."""

    def __init__(self, driver: StorageDriver, watch: GCWatch) -> None:
        self.driver = driver
        self.watch = watch

    async def relied_on(self, directories: Sequence[str]) -> None:
        """A push will rely on these (a HEAD that found a blob, a mount): while a collector runs, it spares
        them (a liveness matter: the manifest PUT's ``settle`` is what makes it safe)."""
        view = await self.watch.view()
        if view.running and view.token:
            await self._journal(view.token, directories)

    async def settle(self, start: GCView, relied: Sequence[str], verify: Callable[[], Awaitable[None]]) -> None:
        """Called after a push stored what relies on ``relied`` (it saw ``start`` before it checked them):
        returns once no collector can delete any of them any more.  ``verify`` checks, in storage, that
        they are all there and raises when one is gone (the caller withdraws what it stored).

        No collector ran since ``start`` and none could have missed what was stored: nothing to do (no
        request).  Otherwise, for the collector of the latest view: the journal entry and the wait for
        its batches, then ``verify``, then the lease again, until it names the same collector."""
        view = await self.watch.view()
        if view.same_era(start) and view.fresh():
            return
        while True:
            if view.running and view.token:
                await self._journal(view.token, relied)
                await self._wait_unswept(view.token, set(relied))
            await verify()
            again = await self.watch.read()
            if again.token == view.token:  # no other collector took the lease meanwhile
                return
            view = again

    async def _journal(self, token: str, directories: Sequence[str]) -> None:
        entry = paths.gc_relied(token, uuid.uuid4().hex)
        await self.driver.put_content(entry, "\n".join(directories).encode())

    async def _wait_unswept(self, token: str, relied: set[str]) -> None:
        """Wait until no batch of the collector ``token`` names one of ``relied`` (markers of a collector
        whose lease is not held any more are ignored: it died)."""
        deadline = time.monotonic() + WAIT
        while True:
            pending = [marker for marker, named in (await self._markers(token)).items() if named & relied]
            if not pending:
                return
            view = await self.watch.read()
            if view.token != token or not view.running:
                return  # that collector is gone: its markers mean nothing
            if time.monotonic() > deadline:
                raise SweepStuck(f"garbage collection has been deleting {len(pending)} batch(es) naming what "
                                 f"this push relies on for {WAIT:g}s")
            await asyncio.sleep(POLL)

    async def _markers(self, token: str) -> dict[str, set[str]]:
        directory = paths.gc_condemned_dir(token)
        try:
            names = await self.driver.list(directory)
        except PathNotFound:
            return {}
        found = {}
        for name in names:
            try:
                found[name] = set((await self.driver.get_content(f"{directory}/{name}")).decode().splitlines())
            except PathNotFound:
                continue
        return found
