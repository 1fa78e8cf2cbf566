"""Mark and sweep on every backend: what is kept, what goes, and the protections for pushes in flight."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from storage import paths
from storage.blobs import BlobStore
from storage.digests import Digest, digest_bytes
from storage.driver import PathNotFound, StorageDriver
from storage.gc import CLOCK_SLACK, GarbageCollector, GCBusy, references
from storage.gc_watch import GCWatch
from storage.lease import Lease, LeaseLost
from storage.manifests import ManifestStore, TagStore
from storage.sweep import Doomed, PushGuard, Sweeper, SweepStuck

pytestmark = pytest.mark.anyio
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Registry:
    """Writes repositories straight into storage, as pushes would leave them."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.blobs = BlobStore(driver)
        self.manifests = ManifestStore(driver, self.blobs)
        self.tags = TagStore(driver)
        self.sizes: dict[Digest, int] = {}

    async def blob(self, name: str, data: bytes) -> dict[str, Any]:
        digest = digest_bytes(data)
        await self.blobs.put(digest, data)
        await self.blobs.link(name, digest)
        return {"mediaType": "application/octet-stream", "digest": str(digest), "size": len(data)}

    async def manifest(self, name: str, doc: dict[str, Any], tag: str | None = None) -> Digest:
        content = json.dumps(doc).encode()
        digest = digest_bytes(content)
        self.sizes[digest] = len(content)
        await self.manifests.put(name, digest, content)
        if tag:
            await self.tags.tag(name, tag, digest)
        return digest

    async def image(self, name: str, layers: list[bytes], tag: str | None = None, **extra: Any) -> Digest:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": await self.blob(name, b'{"os":"linux"}' + name.encode()),
               "layers": [await self.blob(name, layer) for layer in layers], **extra}
        return await self.manifest(name, doc, tag)

    async def present(self, digest: Digest | str) -> bool:
        digest = digest if isinstance(digest, Digest) else Digest(*digest.split(":"))
        try:
            await self.driver.stat(paths.blob_data(digest))
        except PathNotFound:
            return False
        return True


def collector(driver: StorageDriver, **options: Any) -> GarbageCollector:
    """No registry serves these trees: nobody needs the notice before the mark."""
    return GarbageCollector(driver, grace=options.pop("grace", 0.0), lease=Lease(driver, "gc", settle=0),
                            notice=0, **options)


def digest_of(data: bytes) -> Digest:
    return digest_bytes(data)


async def age() -> None:
    """Let what was written so far become older than a run's cut-off (modification times have whole
    seconds on S3)."""
    await asyncio.sleep(1.1 + CLOCK_SLACK)


async def test_sweeps_what_no_tag_reaches_and_keeps_shared_layers(driver: StorageDriver) -> None:
    r = Registry(driver)
    keep = await r.image("team/app", [b"base", b"app-1"], tag="1")
    old = await r.image("team/app", [b"base", b"app-0"], tag="0")
    await r.image("team/other", [b"base", b"other"], tag="latest")
    await r.tags.untag("team/app", "0")
    await r.manifests.delete("team/app", old)  # the tag and the manifest deleted through the API
    await age()
    dry = await collector(driver, dry_run=True).run()
    assert (dry.blobs_removed, dry.links_removed) == (2, 1)  # app-0 and the old manifest; app-0's link
    assert await r.present(digest_of(b"app-0"))

    result = await collector(driver).run()
    assert (result.blobs_removed, result.links_removed, result.manifests_removed) == (2, 1, 0)
    assert result.bytes_freed == len(b"app-0") + r.sizes[old]
    assert not await r.present(digest_of(b"app-0")) and not await r.present(old)
    for data in (b"base", b"app-1", b"other"):
        assert await r.present(digest_of(data))
    assert await r.present(keep)
    with pytest.raises(PathNotFound):
        await driver.stat(paths.layer_link("team/app", digest_of(b"app-0")))
    assert (await collector(driver).run()).blobs_removed == 0  # nothing left to do


async def test_delete_untagged_keeps_index_children_and_referrers(driver: StorageDriver) -> None:
    r = Registry(driver)
    amd = await r.image("multi", [b"amd"])
    arm = await r.image("multi", [b"arm"])
    index = await r.manifest("multi", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": str(d), "size": 1} for d in (amd, arm)]}, tag="v1")
    signature = await r.image("multi", [b"sig"], subject={"mediaType": OCI_INDEX, "digest": str(index), "size": 1})
    untagged = await r.image("multi", [b"untagged"])
    orphan_sig = await r.image("multi", [b"orphan-sig"],
                               subject={"mediaType": OCI_MANIFEST, "digest": str(untagged), "size": 1})
    await age()

    kept_all = await collector(driver).run()  # without delete_untagged every manifest stays
    assert (kept_all.manifests_removed, kept_all.blobs_removed) == (0, 0)

    result = await collector(driver, delete_untagged=True).run()
    assert result.manifests_removed == 2
    for digest in (index, amd, arm, signature, digest_of(b"amd"), digest_of(b"arm"), digest_of(b"sig")):
        assert await r.present(digest), digest
    for digest in (untagged, orphan_sig, digest_of(b"untagged"), digest_of(b"orphan-sig")):
        assert not await r.present(digest), digest
    assert not await r.manifests.exists("multi", untagged)
    assert await r.manifests.exists("multi", amd)


async def test_recent_and_touched_objects_survive(driver: StorageDriver) -> None:
    r = Registry(driver)
    digest = await r.image("app", [b"layer", b"other"], tag="t")
    await r.tags.untag("app", "t")
    await r.manifests.delete("app", digest)
    await age()
    await r.image("app", [b"fresh"])  # pushed while the collection runs: younger than the cut-off
    assert (await collector(driver, grace=3600).run()).blobs_removed == 0  # everything is recent
    spared = digest_of(b"layer")

    class PushDuringSweep(GarbageCollector):
        async def _sweep(self, items: dict[str, Doomed]) -> list[Doomed]:
            # a push relies on the old layer ("layer already exists") after the scan, before the sweep
            await BlobStore(driver).relied_on("app", spared)
            return await super()._sweep(items)

    result = await PushDuringSweep(driver, grace=0, lease=Lease(driver, "gc", settle=0), notice=0).run()
    assert await r.present(spared) and await r.present(digest_of(b"fresh"))
    assert not await r.present(digest) and not await r.present(digest_of(b"other"))
    assert result.blobs_removed == 2  # the old manifest and "other"
    await driver.stat(paths.layer_link("app", spared))  # its link was spared too
    assert result.links_removed == 1  # that of "other" (the config is the fresh image's too)


async def test_one_collection_at_a_time(driver: StorageDriver) -> None:
    holder = Lease(driver, "gc", ttl=60, settle=0)
    assert await holder.acquire()
    with pytest.raises(GCBusy):
        await collector(driver).run()
    await holder.release()
    await collector(driver).run()
    expired = Lease(driver, "gc", ttl=-1, settle=0)  # a replica that died holding it
    await expired.acquire()
    await collector(driver).run()


def test_references_are_read_leniently() -> None:
    sha = "sha256:" + "a" * 64
    other = "sha256:" + "b" * 64
    refs = references(json.dumps({"fsLayers": [{"blobSum": sha}], "manifests": [{"digest": other}],
                                  "subject": {"digest": other}, "layers": [{"digest": "garbled"}]}).encode())
    assert refs is not None
    assert [str(d) for d in refs.blobs] == [sha] and [str(d) for d in refs.children] == [other]
    assert str(refs.subject) == other
    assert references(b"not json") is None and references(b"[1]") is None


async def test_expired_tags_take_their_manifests_unless_still_needed(driver: StorageDriver) -> None:
    r = Registry(driver)
    one = await r.image("app", [b"one"], tag="1")
    two = await r.image("app", [b"two"], tag="2")
    child = await r.image("app", [b"child"], tag="child-amd64")
    index = await r.manifest("app", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": str(child), "size": 1}]}, tag="multi")
    untagged = await r.image("app", [b"untagged"])
    await age()
    asked = []

    class Expire:
        def applies(self, name: str) -> bool:
            return True

        def expired(self, name: str, tags: dict[str, float], now: float) -> list[str]:
            asked.append((name, sorted(tags)))
            assert all(now - 60 < pushed < now for pushed in tags.values())
            return ["1", "child-amd64"]

    expire = Expire()

    dry = await collector(driver, expire=expire, dry_run=True).run()
    assert sorted(t for _, t, _ in dry.tags_removed) == ["1", "child-amd64"] and dry.manifests_removed == 1
    assert await r.tags.resolve("app", "1") == one
    result = await collector(driver, expire=expire).run()
    assert asked[0] == ("app", ["1", "2", "child-amd64", "multi"])
    assert sorted(result.tags_removed) == [("app", "1", one), ("app", "child-amd64", child)]
    assert result.manifests_removed == 1  # "1"; the index still needs the child
    assert not await r.manifests.exists("app", one) and not await r.present(digest_of(b"one"))
    for kept in (two, child, index, untagged, digest_of(b"child"), digest_of(b"untagged")):
        assert await r.present(kept)
    assert await r.tags.list("app") == ["2", "multi"]


# --- the handshake with pushes, and collectors that die (issue 24, item 6) ----------------------------------

async def test_push_during_a_batch_waits_for_it_then_finds_what_went(driver: StorageDriver) -> None:
    """A push relying on blobs that a live collector's batch names waits until the batch is done, then
    checks storage: one blob went (refused), the other was spared by its journal entry."""
    r = Registry(driver)
    await r.image("app", [b"gone", b"kept"])
    gone, kept = paths.blob_dir(digest_of(b"gone")), paths.blob_dir(digest_of(b"kept"))
    lease = Lease(driver, "gc", settle=0)
    assert await lease.acquire()
    watch = GCWatch(driver)
    guard = PushGuard(driver, watch)
    start = await watch.view()
    assert start.running
    marker = paths.gc_condemned(lease.token, "00000001")
    await driver.put_content(marker, f"{gone}\n{kept}".encode())
    checked: list[bool] = []

    async def verify() -> None:
        checked.append(await r.present(digest_of(b"gone")))

    async def collector_finishes_its_batch() -> None:
        await asyncio.sleep(0.3)
        await driver.delete_objects([(gone, (f"{gone}/data",))])  # "kept" was named by the push's entry
        await driver.delete_file(marker)

    finishing = asyncio.create_task(collector_finishes_its_batch())
    await guard.settle(start, [kept], verify)
    await finishing
    assert checked == [False]  # the check came after the batch: it sees what went
    await lease.release()


async def test_dead_collectors_batch_poisons_nothing(driver: StorageDriver, backend: str) -> None:
    """A collector killed mid-sweep leaves its batch marker (and earlier versions left ``condemned``
    files beside blobs): once its lease is no longer held, pushes relying on what the marker names go
    on, and the next run removes what the dead one left."""
    r = Registry(driver)
    digest = await r.image("app", [b"layer"], tag="1")
    layer = digest_of(b"layer")
    dead = Lease(driver, "gc", ttl=1.5, settle=0)
    assert await dead.acquire()
    await driver.put_content(paths.gc_condemned(dead.token, "00000001"), paths.blob_dir(layer).encode())
    await driver.put_content(f"{paths.blob_dir(layer)}/condemned", b"1700000000.0")  # an earlier version's
    watch = GCWatch(driver)
    start = await watch.view()
    verified = []

    async def verify() -> None:
        verified.append(await r.present(layer))

    await PushGuard(driver, watch).settle(start, [paths.blob_dir(layer)], verify)  # waits out the dead lease
    assert verified == [True]
    result = await collector(driver).run()
    assert result.blobs_removed == 0 and await r.present(layer) and await r.present(digest)
    with pytest.raises(PathNotFound):
        await driver.stat(paths.gc_run(dead.token))
    if backend != "filesystem":  # (on local disk GC does not even read the directories of blobs it keeps)
        with pytest.raises(PathNotFound):
            await driver.stat_file(f"{paths.blob_dir(layer)}/condemned")


async def test_push_gives_up_on_a_live_batch_that_never_ends(driver: StorageDriver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lease = Lease(driver, "gc", settle=0)
    assert await lease.acquire()
    directory = paths.blob_dir(digest_of(b"x"))
    await driver.put_content(paths.gc_condemned(lease.token, "00000001"), directory.encode())
    monkeypatch.setattr("storage.sweep.WAIT", 0.3)
    watch = GCWatch(driver)

    async def verify() -> None:
        raise AssertionError("not reached")

    with pytest.raises(SweepStuck):
        await PushGuard(driver, watch).settle(await watch.view(), [directory], verify)
    await lease.release()


async def test_a_quiet_push_costs_no_request(driver: StorageDriver) -> None:
    """No collector ran since the push began: settling reads nothing (the lease view is cached)."""
    watch = GCWatch(driver)
    start = await watch.view()

    async def verify() -> None:
        raise AssertionError("no collector ran: nothing to check")

    class Counting(PushGuard):
        calls = 0

        async def _journal(self, token: str, directories: Any) -> None:
            Counting.calls += 1

    await Counting(driver, watch).settle(start, ["/docker/registry/v2/blobs/x"], verify)
    assert Counting.calls == 0 and await watch.view() is start


async def test_a_repository_pushed_while_the_collector_gives_notice_is_marked(driver: StorageDriver) -> None:
    """A push that has not seen the lease yet skips the handshake: its manifest must be read by the mark,
    even when it creates its repository after the collector took the lease (the repositories are listed
    after the notice, not before).  Here it relies on an old blob that nothing referenced."""
    r = Registry(driver)
    old = digest_of(b"old layer")
    await r.blobs.put(old, b"old layer")
    await age()
    gc = GarbageCollector(driver, grace=0.0, lease=Lease(driver, "gc", settle=0), notice=3.0)
    running = asyncio.create_task(gc.run())
    watch = GCWatch(driver)
    for _ in range(500):
        if (await watch.read()).running:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # well inside the notice, after anything the collector does at once
    await r.blobs.link("late/app", old)  # "layer already exists": linked, not uploaded again
    config = await r.blob("late/app", b'{"os":"linux"}')
    await r.manifest("late/app", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [
        {"mediaType": "application/octet-stream", "digest": str(old), "size": 9}]}, tag="1")
    result = await running
    assert await r.present(old) and result.blobs_removed == 0
    assert result.repositories == 1


async def test_a_run_that_lost_its_lease_leaves_the_new_holders_directory(driver: StorageDriver) -> None:
    """Removing the runs' directories at the end is for a run that still holds the lease: one that lost it
    (paused past its lease) must not remove the journal of the collector that holds it now."""
    holder = Lease(driver, "gc", settle=0)
    assert await holder.acquire()
    entry = paths.gc_relied(holder.token, "e1")
    await driver.put_content(entry, paths.blob_dir(digest_of(b"x")).encode())

    def lost() -> None:
        raise LeaseLost("taken by another process")

    await Sweeper(driver, "old-run", lost).finish()
    assert await driver.get_content(entry) == paths.blob_dir(digest_of(b"x")).encode()
    await Sweeper(driver, holder.token, lambda: None).finish()
    with pytest.raises(PathNotFound):
        await driver.stat(paths.gc_run(holder.token))
    await holder.release()
