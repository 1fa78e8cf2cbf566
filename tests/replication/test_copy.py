"""The copier and the runner between two Moorage instances in one process: what arrives, byte for byte,
and which requests it took (HEAD before sending, mounts, nothing twice)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs

from registry.replication.executions import ExecutionStore
from registry.replication.items import COPY, Item
from registry.replication.rules import PULL, Rule

from .conftest import (
    manifest,
    push_image,
    push_index,
    push_referrer,
    registries,
    run,
    sha256,
)

BASE = b"base layer " * 40_000  # shared by every image: sent once, then mounted


def test_push_copies_images_byte_for_byte_sends_shared_blobs_once_and_nothing_the_second_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            d1, c1 = await push_image(regs.client_here, "team/a", "v1", [BASE, b"a-top"])
            d2, _ = await push_image(regs.client_here, "team/b", "v1", [BASE, b"b-top"])
            await push_image(regs.client_here, "other/c", "v1", [b"not taken"])
            rule = Rule("r", "push", regs.remote(), repositories=("team/**",))
            store = ExecutionStore(regs.here.registry.driver)
            runner = regs.runner(rule)
            first = await runner.run(await store.create("r", "manual"))
            assert first.state == "succeeded", first
            assert first.counts["copied"] == 2 and first.planned == 2
            status, digest, content = await manifest(regs.client_there, "team/a", "v1")
            assert (status, digest, content) == (200, d1, c1)  # byte for byte: the digest stays
            assert (await manifest(regs.client_there, "team/b", "v1"))[1] == d2
            assert (await manifest(regs.client_there, "other/c", "v1"))[0] == 404
            # the shared base went once; team/b got it by a cross-repository mount
            puts = [q for m, p, q in regs.recorder.requests if m == "PUT" and "/blobs/uploads/" in p]
            assert len(puts) == 4  # base, a-top, b-top, one config (the other is the same bytes: mounted)
            mounts = [parse_qs(q) for m, p, q in regs.recorder.requests if m == "POST" and "mount=" in q]
            assert {"mount": [sha256(BASE)], "from": ["team/a"]} in mounts
            assert len(BASE) < first.bytes < len(BASE) + 1000  # the base once, small layers and configs

            regs.recorder.requests.clear()
            second = await runner.run(await store.create("r", "manual"))
            assert second.state == "succeeded" and second.counts["unchanged"] == 2 and second.bytes == 0
            asked = {(m, p) for m, p, _ in regs.recorder.requests}  # the ledger's tags, still listed: no HEAD
            assert asked == {("GET", "/v2/"), ("GET", "/v2/team/a/tags/list"), ("GET", "/v2/team/b/tags/list")}

    run(scenario())


def test_multi_arch_index_with_children_and_referrers_arrives_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            c = regs.client_here
            amd = await push_image(c, "app", None, [BASE, b"amd"], platform="linux/amd64")
            arm = await push_image(c, "app", None, [BASE, b"arm"], platform="linux/arm64")
            index = await push_index(c, "app", "1.0", [(amd[0], amd[1], "linux/amd64"), (arm[0], arm[1], "linux/arm64")])
            signature = await push_referrer(c, "app", index, b"signature of the index")
            sbom = await push_referrer(c, "app", arm, b"sbom of arm", "application/spdx+json")
            countersign = await push_referrer(c, "app", signature, b"signature of the signature")
            rule = Rule("r", "push", regs.remote(), repositories=("app",))
            outcome = await _copy(regs, rule, Item(COPY, "app", "1.0", "app"))
            assert outcome.status == "copied", outcome
            for digest, content in (index, amd, arm, signature, sbom, countersign):
                status, got_digest, got = await manifest(regs.client_there, "app", digest)
                assert (status, got_digest, got) == (200, digest, content)
            listed = (await regs.client_there.get(f"/v2/app/referrers/{index[0]}")).json()["manifests"]
            assert [m["digest"] for m in listed] == [signature[0]]

    run(scenario())


async def _copy(regs, rule, item):  # type: ignore[no-untyped-def]
    from registry.replication.copier import Copier
    from registry.replication.throttle import Throttle

    sides = regs.sides(rule)
    return await Copier(rule, sides.source, sides.destination, Throttle(0)).run(item)


def test_overwrite_off_keeps_a_different_tag_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            await push_image(regs.client_here, "app", "v1", [b"ours"])
            theirs, _ = await push_image(regs.client_there, "app", "v1", [b"theirs"])
            rule = Rule("r", "push", regs.remote(), repositories=("app",), overwrite=False)
            outcome = await _copy(regs, rule, Item(COPY, "app", "v1", "app"))
            assert outcome.status == "skipped" and "overwrite is off" in (outcome.note or "")
            assert (await manifest(regs.client_there, "app", "v1"))[1] == theirs
            moved = await _copy(regs, Rule("r", "push", regs.remote(), repositories=("app",)), Item(COPY, "app", "v1", "app"))
            assert moved.status == "copied"
            assert (await manifest(regs.client_there, "app", "v1"))[1] != theirs

    run(scenario())


def test_filters_destination_names_and_deletes_of_a_full_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            c = regs.client_here
            for tag in ("1.0", "1.1", "1.1-debug", "latest", "2.0-rc1"):
                await push_image(c, "payments/api", tag, [tag.encode()])
            await push_image(c, "payments/api-internal", "1.0", [b"x"])
            await push_image(regs.client_there, "dr/api", "0.9", [b"old"])
            await push_image(regs.client_there, "dr/api", "notes", [b"kept: excluded"])
            rule = Rule("r", "push", regs.remote(), repositories=("payments/*",), exclude_repositories=("**internal",),
                        tags=("1.*", "2.*", "0.*"), exclude_tags=("*-debug",), tag_regex=re.compile(r"[0-9.]+"),
                        strip="payments", prefix="dr", deletes=True)
            execution = await regs.runner(rule).run(await ExecutionStore(regs.here.registry.driver).create("r", "manual"))
            assert execution.state == "succeeded", execution
            tags = (await regs.client_there.get("/v2/dr/api/tags/list")).json()["tags"]
            assert sorted(tags) == ["1.0", "1.1", "notes"]  # 0.9 deleted, rc/debug/latest filtered out
            assert (await regs.client_there.get("/v2/dr/api-internal/tags/list")).status_code == 404
            assert execution.counts == {"copied": 2, "unchanged": 0, "deleted": 1, "skipped": 0, "failed": 0}

    run(scenario())


def test_pull_writes_through_the_push_policies(tmp_path: Path) -> None:
    """Pulled content lands like a push: verified, indexed, counted against the quota."""
    async def scenario() -> None:
        quotas = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "here")},
                              "quotas": [{"namespaces": ["small"], "limit": "1KB"}]}}
        async with registries(tmp_path, here=quotas) as regs:
            digest, content = await push_image(regs.client_there, "big/app", "v1", [BASE])
            await push_image(regs.client_there, "small/app", "v1", [BASE])
            signature = await push_referrer(regs.client_there, "big/app", (digest, content), b"sig")
            rule = Rule("r", PULL, regs.remote(), repositories=("big/app", "small/app"))
            execution = await regs.runner(rule).run(await ExecutionStore(regs.here.registry.driver).create("r", "manual"))
            assert execution.state == "failed" and execution.counts["copied"] == 1 and execution.counts["failed"] == 1
            assert (await manifest(regs.client_here, "big/app", "v1"))[1:] == (digest, content)
            listed = (await regs.client_here.get(f"/v2/big/app/referrers/{digest}")).json()["manifests"]
            assert [m["digest"] for m in listed] == [signature[0]]
            failed = await ExecutionStore(regs.here.registry.driver).failed_items(execution)
            assert len(failed) == 1 and "quota exceeded" in (failed[0][1].note or "")
            assert (await manifest(regs.client_here, "small/app", "v1"))[0] == 404

    run(scenario())


def test_labels_and_artifact_types_select_what_is_copied(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            await push_image(regs.client_here, "app", "approved", [b"a"], labels={"release": "approved"})
            await push_image(regs.client_here, "app", "draft", [b"d"], labels={"release": "draft"})
            rule = Rule("r", "push", regs.remote(), repositories=("app",), labels={"release": "approved"})
            approved = await _copy(regs, rule, Item(COPY, "app", "approved", "app"))
            draft = await _copy(regs, rule, Item(COPY, "app", "draft", "app"))
            assert approved.status == "copied" and draft.status == "skipped" and "release" in (draft.note or "")
            helm = Rule("h", "push", regs.remote(), repositories=("app",),
                        artifact_types=frozenset({"application/vnd.cncf.helm.config.v1+json"}))
            skipped = await _copy(regs, helm, Item(COPY, "app", "approved", "app"))
            assert skipped.status == "skipped" and "artifact type" in (skipped.note or "")

    run(scenario())


def test_referrers_go_to_the_tag_schema_on_a_registry_without_the_referrers_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            subject = await push_image(regs.client_here, "app", "v1", [b"img"])
            signature = await push_referrer(regs.client_here, "app", subject, b"sig")
            # "there" acts like Distribution 2.8: no referrers API, no OCI-Subject answer
            regs.recorder.fail = lambda m, p, q: 404 if "/referrers/" in p else None
            real_send = regs.remote_http.send

            async def without_subject(request, **kwargs):  # type: ignore[no-untyped-def]
                response = await real_send(request, **kwargs)
                if "oci-subject" in response.headers:
                    del response.headers["oci-subject"]
                return response

            regs.remote_http.send = without_subject  # type: ignore[method-assign]
            rule = Rule("r", "push", regs.remote(), repositories=("app",))
            assert (await _copy(regs, rule, Item(COPY, "app", "v1", "app"))).status == "copied"
            tag = "sha256-" + subject[0].split(":")[1]
            status, _, content = await manifest(regs.client_there, "app", tag)
            assert status == 200
            assert [m["digest"] for m in json.loads(content)["manifests"]] == [signature[0]]
            # and back: reading referrers from such a registry goes through the same tag
            pull = Rule("p", PULL, regs.remote(), repositories=("app",))
            outcome = await _copy(regs, pull, Item(COPY, "app", "v1", "mirror/app"))
            assert outcome.status == "copied"
            listed = (await regs.client_here.get(f"/v2/mirror/app/referrers/{subject[0]}")).json()["manifests"]
            assert [m["digest"] for m in listed] == [signature[0]]
            # the tag itself is no tag to replicate
            assert not pull.takes_tag(tag)

    run(scenario())


def test_concurrent_items_send_each_blob_once(tmp_path: Path) -> None:
    """Items run in parallel: tags of one repository share its layer, repositories share a base; each
    unique blob is uploaded exactly once, the rest are HEADs or mounts."""
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            unique: set[str] = {sha256(BASE)}
            for r in range(3):
                app = f"app layer {r}".encode() * 1000
                unique.add(sha256(app))
                for t in range(4):
                    own = f"own {r}/{t}".encode()
                    await push_image(regs.client_here, f"team/r{r}", f"v{t}", [BASE, app, own])
                    unique.add(sha256(own))
            rule = Rule("r", "push", regs.remote(), repositories=("team/**",), concurrency=8)
            regs.recorder.latency = 0.02  # HEADs in flight at once for one blob
            execution = await regs.runner(rule).run(await ExecutionStore(regs.here.registry.driver).create("r", "manual"))
            assert execution.state == "succeeded" and execution.counts["copied"] == 12
            uploaded = [parse_qs(q)["digest"][0] for m, p, q in regs.recorder.requests
                        if m == "PUT" and "/blobs/uploads/" in p]
            layers = [d for d in uploaded if d in unique]
            assert sorted(layers) == sorted(unique)  # every layer once
            assert len(uploaded) - len(layers) <= 3  # the configs: one per repository (same platform, same bytes)

    run(scenario())
