"""One replica at a time runs a rule's executions: the one holding the rule's lease in storage
(``storage.lease``: ``replication-<rule>``).  The holder renews it while it works; a holder that dies stops
renewing, the lease expires ``ttl`` seconds later and another replica (or the restarted one) takes the
rule over and resumes its execution where the last checkpoint left it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from storage.driver import StorageDriver
from storage.lease import Lease, LeaseLost

log = logging.getLogger("moorage.replication")


class RuleLease:
    def __init__(self, driver: StorageDriver, rule: str, ttl: float) -> None:
        self.lease = Lease(driver, f"replication-{rule}", ttl=ttl, settle=min(0.5, ttl / 10))

    @property
    def holder(self) -> str:
        return self.lease.holder

    async def hold(self) -> bool:
        """Whether this process holds the rule now: it held it (renewed when half spent) or took it."""
        return await self.lease.hold()

    async def current_holder(self) -> str | None:
        current = await self.lease.current()
        return None if current is None else str(current.get("holder"))

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease while the body runs; should another process take it, the body is cancelled."""
        task = asyncio.current_task()
        assert task is not None
        lost = False

        async def renew() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(self.lease.ttl / 3)
                try:
                    await self.lease.renew()
                except LeaseLost:
                    log.error("replication: lease %s taken by another process: stopping here", self.lease.name)
                    lost = True
                    task.cancel()
                    return
                except Exception as e:  # noqa: BLE001 - storage trouble: the next renewal may work
                    log.warning("replication: renewing lease %s: %s", self.lease.name, e)

        renewer = asyncio.create_task(renew())
        try:
            yield
        except asyncio.CancelledError:
            if lost:
                task.uncancel()  # our own cancellation, turned into LeaseLost
                raise LeaseLost(f"lease {self.lease.name} lost") from None
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.lease.release()
