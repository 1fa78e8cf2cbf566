"""Storage accounting (storage/accounting.py): the usage index several replicas keep over one storage, one walk
for any number of callers, and ``exclusive`` over what the caller sees (issue 24, items 2 and 10)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

import pytest

import storage.accounting as accounting
from storage import paths
from storage.accounting import Holdings, UsageIndex, UsageReport, usage_of
from storage.digests import Digest, digest_bytes
from storage.driver import StorageDriver
from tests.storage.conftest import DriverFactory

pytestmark = pytest.mark.anyio


async def inline(compute: Callable[[], UsageReport]) -> UsageReport:
    return compute()


async def everything(names: Collection[str]) -> Collection[str]:
    return names


async def push(driver: StorageDriver, name: str, *blobs: bytes) -> None:
    """Blobs stored and linked into ``name``, and a manifest revision (as a push leaves them)."""
    for data in blobs:
        digest = digest_bytes(data)
        await driver.put_content(paths.blob_data(digest), data)
        await driver.put_content(paths.layer_link(name, digest), str(digest).encode())
    manifest = f"manifest of {name}".encode()
    digest = digest_bytes(manifest)
    await driver.put_content(paths.blob_data(digest), manifest)
    await driver.put_content(paths.revision_link(name, digest), str(digest).encode())


def sizes(report: UsageReport) -> dict[str, int]:
    return {h.name: h.bytes for h in report.repositories}


async def test_a_replica_counts_what_another_pushed_within_max_age(make_driver: DriverFactory) -> None:
    writer, reader = make_driver(), make_driver()  # two replicas of one storage
    await push(writer, "team/a", b"a" * 100)
    index = UsageIndex(reader, inline, max_age=0.5)
    first = await index.report("admin", everything)
    assert sizes(first) == {"team/a": 100 + len(b"manifest of team/a")}
    await push(writer, "team/b", b"b" * 200)
    deadline = time.monotonic() + 10
    while "team/b" not in sizes(report := await index.report("admin", everything)):
        assert time.monotonic() < deadline, "the other replica's push never showed"
        await asyncio.sleep(0.1)
    assert report.taken_at > first.taken_at
    assert report.total.bytes == 300 + len(b"manifest of team/a") + len(b"manifest of team/b")


async def test_one_walk_for_any_number_of_callers(driver: StorageDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    await push(driver, "team/a", b"a" * 100)
    walks: list[float] = []  # how long each took
    read_holdings = accounting.read_holdings

    async def counted(*args: object) -> Holdings:
        started = time.monotonic()
        await asyncio.sleep(0.05)  # a walk takes a while: the callers meanwhile wait for the same one
        holdings = await read_holdings(*args)  # type: ignore[arg-type]
        walks.append(time.monotonic() - started)
        return holdings

    monkeypatch.setattr(accounting, "read_holdings", counted)
    index = UsageIndex(driver, inline, max_age=0.0)
    reports = await asyncio.gather(*(index.report(f"caller {i % 3}", everything) for i in range(30)))
    assert len(walks) == 1 and all(sizes(r) == sizes(reports[0]) for r in reports)
    # with no max age, the next walk still waits ten times as long as the last one took
    assert sizes(await index.report("caller 0", everything)) == sizes(reports[0]) and len(walks) == 1
    await asyncio.sleep(10 * walks[0] + 0.1)
    await index.report("caller 0", everything)
    assert len(walks) == 2


def test_exclusive_is_computed_over_what_the_caller_sees() -> None:
    """Item 10: a layer pushed into one's own repository is not shown shared with an unseen one."""
    secret, mine, shared = (digest_bytes(x) for x in (b"secret", b"mine", b"shared"))
    holdings = Holdings(
        repositories={"alice/app": frozenset({secret, shared}), "bob/app": frozenset({secret, mine}),
                      "bob/tool": frozenset({shared}), "public/base": frozenset({shared})},
        sizes={secret: 1000, mine: 10, shared: 100}, taken_at=0.0)
    bob = usage_of(holdings, {"bob/app", "bob/tool"})
    assert [(h.name, h.bytes, h.exclusive) for h in bob.repositories] == [("bob/app", 1010, 1010),
                                                                         ("bob/tool", 100, 100)]
    assert [(h.name, h.bytes, h.exclusive) for h in bob.namespaces] == [("bob", 1110, 1110)]
    assert (bob.total.bytes, bob.total.blobs) == (1110, 3)
    everyone = usage_of(holdings)
    assert {h.name: h.exclusive for h in everyone.repositories} == {
        "alice/app": 0, "bob/app": 10, "bob/tool": 0, "public/base": 0}
    assert {h.name: h.exclusive for h in everyone.namespaces} == {"alice": 0, "bob": 10, "public": 0}


async def test_a_link_without_its_blob_is_not_counted(driver: StorageDriver) -> None:
    await push(driver, "team/a", b"a" * 100)
    gone = Digest("sha256", "0" * 64)
    await driver.put_content(paths.layer_link("team/a", gone), str(gone).encode())
    report = await UsageIndex(driver, inline).report(None, everything)
    assert report.repositories[0].blobs == 2 and report.repositories[0].bytes == 100 + len(b"manifest of team/a")
