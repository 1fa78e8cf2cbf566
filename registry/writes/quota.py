"""Quotas on the write path: every write that adds bytes to a namespace reserves them in the usage ledger
before it links anything, and goes ahead only if the namespace stays within its limit.

Each write writes its entry first and reads the namespace's figures after (``_decide``), so concurrent
writes through any number of replicas never take a namespace over its limit together: of 16 parallel
completions, mounts or monolithic uploads that would each fit alone, only as many as fit are accepted.
Writes that all saw each other over the limit withdraw and try again after a random wait, so that some
of them go ahead rather than none (a database could arbitrate exactly; see docs/gc.md).  Bytes in
unfinished upload sessions count (an entry per session, renewed by every PATCH): a PATCH that declares
its length is refused before a byte is stored; a streamed one, when the namespace is full already (what
it stored counts, so its completion is refused).  A refused completion removes its session (as
Distribution's does; clients upload again).  A delete uncounts the blobs the namespace no longer links
anywhere, so the figure agrees with ``moorage du`` and /api/v1/usage at once.  The limit comes from
``NamespaceLimits`` (``storage.quotas``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.writes.policy import NamespaceLimits
from storage.digests import Digest
from storage.metrics import quota_usage
from storage.uploads import UploadInfo
from storage.usage import UsageLedger, namespace_of

CONTENTION_WINDOW = 2.0  # entries this recent may be writes that are still deciding, and withdraw
CONTENDED_TRIES = 6
CONTENTION_BACKOFF = 0.02  # seconds: the first wait is up to this, each next up to twice the last


@dataclass(frozen=True, slots=True)
class Reservation:
    name: str
    entry: str  # the ledger entry counting ``blobs``
    blobs: tuple[tuple[Digest, int], ...]

    @property
    def size(self) -> int:
        return sum(size for _, size in self.blobs)


class QuotaGuard:
    def __init__(self, ledger: UsageLedger, limits: NamespaceLimits) -> None:
        self.ledger = ledger
        self.limits = limits

    async def reserve(self, name: str, blobs: Iterable[tuple[Digest, int]], upload: UploadInfo | None = None,
                      check: bool = True) -> Reservation | None:
        """Count the blobs the namespace of ``name`` does not count yet, before they are linked; refuse
        (DENIED) when that would take it over its limit.  ``upload``: the session whose bytes these
        become (its entry is left out of the check).  ``check`` false: count without deciding (the
        mirror's cache).  None when there is nothing new to count."""
        new = tuple([(d, s) for d, s in dict(blobs).items() if not await self.ledger.counted(name, d)])
        if not new:
            return None
        size = sum(s for _, s in new)

        async def write() -> str:
            return await self.ledger.reserve(name, size, [d for d, _ in new])

        if not check:
            return Reservation(name, await write(), new)
        excluding = await self.ledger.session_entries(name, upload.id) if upload is not None else []
        return Reservation(name, await self._decide(namespace_of(name), size, write, excluding), new)

    @contextlib.asynccontextmanager
    async def counting(self, name: str, blobs: Iterable[tuple[Digest, int]], upload: UploadInfo | None = None,
                       check: bool = True) -> AsyncIterator[None]:
        """Around linking ``blobs`` into ``name``: reserved (or refused) before, marked counted after,
        withdrawn when the linking fails."""
        reservation = await self.reserve(name, blobs, upload, check)
        try:
            yield
        except BaseException:
            await self.withdraw(reservation)
            raise
        await self.settle(reservation)

    async def settle(self, reservation: Reservation | None) -> None:
        """The blobs are linked now: mark them counted.  Bytes another write counted first meanwhile are
        taken back, so the ledger errs high only while this runs."""
        if reservation is None:
            return
        surplus = sum([size for digest, size in reservation.blobs
                       if not await self.ledger.mark(reservation.name, digest, size)])
        if surplus:
            ns = namespace_of(reservation.name)
            if surplus < reservation.size:
                await self.ledger.reserve(reservation.name, reservation.size - surplus,
                                          [d for d, _ in reservation.blobs])
            await self.ledger.withdraw(ns, reservation.entry)

    async def withdraw(self, reservation: Reservation | None) -> None:
        """The write did not happen: its bytes do not count."""
        if reservation is not None:
            await self.ledger.withdraw(namespace_of(reservation.name), reservation.entry)

    async def hold(self, upload: UploadInfo, size: int) -> str:
        """The session is about to hold ``size`` bytes: its new entry; refused (DENIED) when that would
        take the namespace over its limit, or when it is full already and ``size`` adds nothing known
        (a streamed PATCH: what it stores counts once it ended)."""

        async def write() -> str:
            return await self.ledger.hold(upload.name, upload.id, size)

        adding = size - upload.size
        return await self._decide(namespace_of(upload.name), adding, write, [], refuse_when_full=adding <= 0)

    async def account(self, upload: UploadInfo, entry: str | None = None, size: int | None = None) -> None:
        """A request on the session ended with ``upload.size`` bytes stored: that is what counts now (the
        request's ``entry``, held for ``size`` bytes, when it says so; a new one otherwise)."""
        if entry is None or upload.size != size:
            entry = await self.ledger.hold(upload.name, upload.id, upload.size)
        await self.ledger.release(upload.name, upload.id, keep=entry)

    async def release(self, name: str, upload_id: str) -> None:
        """The session ended (completed, cancelled, purged): its bytes no longer count as uploading."""
        await self.ledger.release(name, upload_id)

    async def uncount(self, name: str, digest: Digest) -> None:
        """``name`` unlinked the blob: uncount it unless another repository of the namespace links it."""
        await self.ledger.uncount(name, digest)

    async def _decide(self, ns: str, adding: int, write: Callable[[], Awaitable[str]], excluding: list[str],
                      refuse_when_full: bool = False) -> str:
        """Write the entry, then read the namespace's figures, it included and ``excluding`` left out: the
        entry's name when they are within the limit.  Over it, and with no recent write of another that
        may yet withdraw to explain it, refuse (DENIED; the entry withdrawn).  When such writes explain it,
        all may have seen each other: withdraw, wait a random while (longer each time) and try again, so
        that some go ahead (a few tries, then refuse)."""
        limit = await self.limits.limit(ns)
        entry = await write()
        if limit is None:
            return entry
        for attempt in range(CONTENDED_TRIES):
            since = time.time() - CONTENTION_WINDOW
            figures = await self.ledger.figures(ns, excluding, since=since, mine=entry)
            used = figures.total - max(adding, 0)  # without this write
            quota_usage(ns, used, limit)
            over = figures.total > limit or (refuse_when_full and figures.total >= limit)
            if not over:
                return entry
            await self.ledger.withdraw(ns, entry)
            settled = figures.total - figures.recent
            if attempt == CONTENDED_TRIES - 1 or settled > limit or (refuse_when_full and settled >= limit):
                raise RegistryError(
                    "DENIED",
                    f"quota exceeded: namespace {ns} stores {used} bytes of its {limit}; this push adds {adding}",
                    detail={"namespace": ns, "usage": used, "limit": limit, "adding": adding},
                )
            await asyncio.sleep(random.uniform(0, CONTENTION_BACKOFF * 2 ** attempt))
            entry = await write()
        raise AssertionError("unreachable")
