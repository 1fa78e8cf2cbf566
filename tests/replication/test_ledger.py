"""The rule's ledger (registry.replication.ledger): which destination tags a run may take as unchanged
without a HEAD, and every way it is not trusted: a tag gone from the destination's list, a source that
moved, an entry older than ``recheck``, an execution that never ended."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.replication.executions import Execution, ExecutionStore
from registry.replication.ledger import Ledger, LedgerStore
from registry.replication.rules import Rule
from registry.replication.runner import Runner

from .conftest import manifest, push_image, registries, run

IMAGE = [b"layer of the ledger tests", b"top"]


def heads(regs) -> int:  # type: ignore[no-untyped-def]
    return regs.recorder.count("HEAD", "/manifests/")


@dataclass
class Replicating:
    """Rule ``r``: push repository ``app`` to "there"; ``run`` runs it once, by hand."""

    rule: Rule
    runner: Runner
    store: ExecutionStore

    async def run(self) -> Execution:
        return await self.runner.run(await self.store.create("r", "manual"))


def replicating(regs: Any, **options: Any) -> Replicating:
    rule = Rule("r", "push", regs.remote(), repositories=("app",), **options)
    return Replicating(rule, regs.runner(rule), ExecutionStore(regs.here.registry.driver))


def test_a_run_with_nothing_changed_lists_tags_and_sends_no_head(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            for tag in ("v1", "v2", "v3"):
                await push_image(regs.client_here, "app", tag, [*IMAGE, tag.encode()])
            r = replicating(regs)
            assert (await r.run()).counts["copied"] == 3
            regs.recorder.requests.clear()
            second = await r.run()
            assert second.counts["unchanged"] == 3, second
            assert heads(regs) == 0 and regs.recorder.count("GET", "/v2/app/tags/list") == 1

    run(scenario())


def test_with_deletes_the_plans_tag_lists_serve_the_copy_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            for tag in ("v1", "v2"):
                await push_image(regs.client_here, "app", tag, [*IMAGE, tag.encode()])
            r = replicating(regs, deletes=True)
            await r.run()
            regs.recorder.requests.clear()
            assert (await r.run()).counts["unchanged"] == 2
            assert heads(regs) == 0 and regs.recorder.count("GET", "/v2/app/tags/list") == 1

    run(scenario())


def test_a_tag_deleted_on_the_destination_is_copied_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            digest, content = await push_image(regs.client_here, "app", "v1", IMAGE)
            r = replicating(regs)
            await r.run()
            assert (await regs.client_there.delete("/v2/app/manifests/v1")).status_code == 202
            assert (await manifest(regs.client_there, "app", "v1"))[0] == 404
            again = await r.run()
            assert again.counts["copied"] == 1, again
            assert await manifest(regs.client_there, "app", "v1") == (200, digest, content)

    run(scenario())


def test_a_tag_moved_on_the_source_is_asked_for_and_copied(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            await push_image(regs.client_here, "app", "v1", IMAGE)
            r = replicating(regs)
            await r.run()
            moved = await push_image(regs.client_here, "app", "v1", [*IMAGE, b"new top"])
            regs.recorder.requests.clear()
            again = await r.run()
            assert again.counts["copied"] == 1 and heads(regs) == 1, again
            assert await manifest(regs.client_there, "app", "v1") == (200, *moved)

    run(scenario())


def test_a_tag_moved_by_a_third_party_is_seen_after_recheck(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            ours = await push_image(regs.client_here, "app", "v1", IMAGE)
            trusting = replicating(regs)
            await trusting.run()
            theirs = await push_image(regs.client_there, "app", "v1", [b"somebody else's"])
            # within recheck the ledger's word is taken (documented): the tag stays theirs
            assert (await trusting.run()).counts["unchanged"] == 1
            assert (await manifest(regs.client_there, "app", "v1"))[1] == theirs[0]
            # recheck 0 asks the destination every time: the tag is put back
            asking = replicating(regs, recheck=0)
            regs.recorder.requests.clear()
            assert (await asking.run()).counts["copied"] == 1
            assert heads(regs) == 1 and await manifest(regs.client_there, "app", "v1") == (200, *ours)

    run(scenario())


def test_after_an_execution_that_never_ended_nothing_recorded_is_trusted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            await push_image(regs.client_here, "app", "v1", IMAGE)
            r = replicating(regs)
            await r.run()
            ledgers = LedgerStore(regs.here.registry.driver, "r")
            await ledgers.open(r.rule.remote.url, r.rule.recheck)  # an execution that is killed: its marker stays
            regs.recorder.requests.clear()
            assert (await r.run()).counts["unchanged"] == 1
            assert heads(regs) == 1  # asked, not taken from the ledger
            regs.recorder.requests.clear()
            await r.run()  # that one ended: trusted again
            assert heads(regs) == 0

    run(scenario())


def test_a_ledger_of_another_destination_or_garbled_is_empty(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            driver = regs.here.registry.driver
            ledgers = LedgerStore(driver, "r")
            ledger = await ledgers.open("http://a.test", 60)
            ledger.confirm("app", "v1", "sha256:" + "a" * 64)
            await ledgers.close(ledger)
            assert (await ledgers.open("http://a.test", 60)).trusted("app", "v1", "sha256:" + "a" * 64)
            await ledgers.close(ledger)
            assert (await ledgers.open("http://b.test", 60)).entries == {}
            await ledgers.close(ledger)
            await driver.put_content(ledgers.path, b"{not json")
            assert (await ledgers.open("http://a.test", 60)).entries == {}

    run(scenario())


def test_trust_ends_with_recheck_and_a_different_digest() -> None:
    ledger = Ledger("http://a.test", 60)
    ledger.confirm("app", "v1", "sha256:1")
    assert ledger.trusted("app", "v1", "sha256:1")
    assert not ledger.trusted("app", "v1", "sha256:2") and not ledger.trusted("app", "v2", "sha256:1")
    ledger.entries[("app", "v1")] = ("sha256:1", time.time() - 61)
    assert not ledger.trusted("app", "v1", "sha256:1")
    ledger.confirm("app", "v1", "sha256:1")
    ledger.retain({("app", "v2")})
    assert ledger.entries == {}
