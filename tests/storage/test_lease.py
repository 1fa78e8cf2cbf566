"""The storage lease (storage.lease): one holder at a time across processes; on a local filesystem
taken under a lock, at once; elsewhere written, then read back after ``settle``."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from storage.driver import StorageDriver
from storage.driver.filesystem import FilesystemDriver
from storage.lease import Lease, LeaseLost

CONTENDERS = 6
ROUNDS = 8


def contend(root: str, name: str, start: Any, results: Any) -> None:
    """One process: wait for the others, then try to take the lease ``name`` (no settle to wait)."""
    driver = FilesystemDriver(root, fsync=False)
    start.wait()
    results.put(asyncio.run(Lease(driver, name, ttl=60, settle=0).acquire()))


def test_processes_racing_for_a_free_lease_on_a_filesystem_end_with_one_holder(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        start, results = context.Barrier(CONTENDERS), context.Queue()
        processes = [context.Process(target=contend, args=(str(tmp_path), f"race-{round_}", start, results))
                     for _ in range(CONTENDERS)]
        for process in processes:
            process.start()
        won = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert won.count(True) == 1, f"round {round_}: {won.count(True)} holders"


def test_the_settle_is_waited_only_where_there_is_no_lock(driver: StorageDriver, backend: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("storage.lease.asyncio.sleep", sleep)
    first, second = Lease(driver, "settle", settle=0.25), Lease(driver, "settle", settle=0.25)
    assert asyncio.run(first.acquire()) and not asyncio.run(second.acquire())
    assert (0.25 in waited) == (backend != "filesystem")


def test_a_holder_whose_lease_expired_and_was_taken_loses_it(driver: StorageDriver) -> None:
    async def scenario() -> None:
        late = Lease(driver, "taken", ttl=60, settle=0)
        assert await late.acquire()
        late.ttl = -1  # its last renewal came too late: expired as soon as written
        await late.renew()
        other = Lease(driver, "taken", ttl=60, settle=0)
        assert await other.acquire()
        with pytest.raises(LeaseLost):
            await late.renew()
        await late.release()  # not its lease: left alone
        assert (await other.current() or {}).get("token") == other.token

    asyncio.run(scenario())
