"""Executions when the remote fails: one item's error, a full disk, a remote that is down, refused
credentials; retries, alerts, and resuming an execution that was interrupted."""

from __future__ import annotations

from pathlib import Path

import httpx

from registry.replication import remote as remote_module
from registry.replication.executions import ExecutionStore
from registry.replication.items import COPIED, COPY, Item, Outcome
from registry.replication.rules import Retry, Rule

from .conftest import manifest, push_image, registries, run, sha256


def fast(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(remote_module, "FIRST_WAIT", 0.01)


def test_a_full_disk_fails_that_item_with_the_remotes_error_and_the_others_go_on(tmp_path: Path, monkeypatch) -> None:
    fast(monkeypatch)

    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            big = b"too big for the disk" * 1000
            for name in ("a", "b", "c"):
                await push_image(regs.client_here, f"team/{name}", "v1", [name.encode() * 10])
            await push_image(regs.client_here, "team/big", "v1", [big])
            full = sha256(big).split(":")[1]
            regs.recorder.fail = lambda m, p, q: 507 if m == "PUT" and full in q else None
            alerts: list[dict] = []
            rule = Rule("r", "push", regs.remote(), repositories=("team/**",), retry=Retry(attempts=1, backoff=60))
            store = ExecutionStore(regs.here.registry.driver)
            execution = await regs.runner(rule, alerts).run(await store.create("r", "manual"))
            assert execution.state == "failed" and execution.error is None
            assert execution.counts["copied"] == 3 and execution.counts["failed"] == 1
            [(item, outcome)] = await store.failed_items(execution)
            assert item.source == "team/big"
            assert "HTTP 507" in (outcome.note or "") and "injected 507" in (outcome.note or "")
            assert regs.recorder.count("PUT", "/v2/team/big/blobs/uploads/") == 1  # a full disk is not retried
            # retried later, for the failed item only, and announced
            [retry_id, *_] = [i for i in await store.active("r") if i != execution.id]
            retry = await store.load("r", retry_id)
            assert retry is not None and retry.trigger == "retry" and retry.attempt == 2
            assert retry.retry_of == execution.id and retry.not_before is not None
            assert [i.source for i in await store.items(retry) or []] == ["team/big"]
            assert alerts and alerts[0]["action"] == "replication"
            assert alerts[0]["replication"]["retry"] == retry.id and alerts[0]["replication"]["state"] == "failed"
            regs.recorder.fail = None
            done = await regs.runner(rule, alerts).run(retry)
            assert done.state == "succeeded" and done.counts["copied"] == 1
            assert (await manifest(regs.client_there, "team/big", "v1"))[0] == 200
            assert len(alerts) == 1

    run(scenario())


def test_a_remote_that_is_down_stops_the_execution_and_it_completes_on_retry(tmp_path: Path, monkeypatch) -> None:
    fast(monkeypatch)

    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            for i in range(12):
                await push_image(regs.client_here, f"team/app{i:02d}", "v1", [f"layer {i}".encode()])
            regs.recorder.fail = lambda m, p, q: 503
            rule = Rule("r", "push", regs.remote(), repositories=("team/**",), concurrency=1, requestretries=2,
                        retry=Retry(attempts=3, backoff=1))
            store = ExecutionStore(regs.here.registry.driver)
            first = await regs.runner(rule).run(await store.create("r", "manual"))
            assert first.state == "failed" and "stopped answering" in (first.error or "")
            assert len(regs.recorder.requests) == 3  # GET /v2/ and its 2 retries: no storm over 12 items
            assert first.planned is None  # planned again by the retry
            # down after the start: DOWN_LIMIT items fail, the others are not started
            regs.recorder.requests.clear()
            regs.recorder.fail = lambda m, p, q: None if p == "/v2/" else 503
            first = await regs.runner(rule).run(await store.create("r", "manual"))
            assert first.state == "failed" and "stopped answering" in (first.error or "")
            assert first.counts["failed"] in (3, 4) and first.planned == 12  # 2 items are in flight at once
            assert len(regs.recorder.requests) == 1 + first.counts["failed"] * 3  # each item's first request, 3 times
            retry = next(e for e in [await store.load("r", i) for i in await store.active("r")]
                         if e is not None and e.retry_of == first.id)
            assert len(await store.items(retry) or []) == 12  # the failed ones and those never started
            regs.recorder.fail = None
            done = await regs.runner(rule).run(retry)
            assert done.state == "succeeded" and done.counts["copied"] == 12

    run(scenario())


def test_refused_credentials_give_one_clear_error_and_no_retry(tmp_path: Path) -> None:
    async def scenario() -> None:
        htpasswd = tmp_path / "htpasswd"
        from auth.htpasswd import set_password

        set_password(htpasswd, "replicator", "right", cost=4)
        auth = {"auth": {"htpasswd": {"realm": "there", "path": str(htpasswd)}}}
        async with registries(tmp_path, there=auth) as regs:
            for i in range(5):
                await push_image(regs.client_here, f"team/app{i}", "v1", [f"layer {i}".encode()])
            rule = Rule("r", "push", regs.remote(username="replicator", password="wrong"), repositories=("team/**",))
            store = ExecutionStore(regs.here.registry.driver)
            alerts: list[dict] = []
            execution = await regs.runner(rule, alerts).run(await store.create("r", "manual"))
            assert execution.state == "failed"
            assert "refused the credentials of 'replicator'" in (execution.error or "")
            assert execution.counts["failed"] == 0  # one error for the execution, not one per item
            assert len(regs.recorder.requests) == 2  # GET /v2/ anonymously, then with the credentials
            assert await store.active("r") == []  # no retry: it cannot help
            assert alerts and alerts[0]["replication"]["retry"] is None
            good = Rule("r", "push", regs.remote(username="replicator", password="right"), repositories=("team/**",))
            assert (await regs.runner(good).run(await store.create("r", "manual"))).state == "succeeded"

    run(scenario())


def test_an_interrupted_execution_resumes_where_its_checkpoint_left_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with registries(tmp_path) as regs:
            for i in range(4):
                await push_image(regs.client_here, f"team/app{i}", "v1", [f"layer {i}".encode()])
            rule = Rule("r", "push", regs.remote(), repositories=("team/**",))
            store = ExecutionStore(regs.here.registry.driver)
            items = [Item(COPY, f"team/app{i}", "v1", f"team/app{i}") for i in range(4)]
            execution = await store.create("r", "manual", items)
            # a replica ran it and died after two items: their outcomes were checkpointed
            execution.state, execution.started = "running", 1.0
            await store.save(execution)
            await store.save_outcomes(execution, {0: Outcome(COPIED, 10, 1), 1: Outcome(COPIED, 10, 1)})
            done = await regs.runner(rule).run(execution)
            assert done.state == "succeeded" and done.counts["copied"] == 4 and done.started == 1.0
            gets = [p for m, p, _ in regs.recorder.requests if m == "HEAD" and "/manifests/" in p]
            assert sorted(gets) == ["/v2/team/app2/manifests/v1", "/v2/team/app3/manifests/v1"]
            assert await store.active("r") == []

    run(scenario())


def test_a_token_server_gets_one_request_per_scope_and_push_scopes(tmp_path: Path) -> None:
    """Docker token auth: the realm is asked once per repository scope, with pull,push for writes."""
    issued: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(request.url.params.get_list("scope"))
            return httpx.Response(200, json={"token": "t:" + " ".join(request.url.params.get_list("scope")),
                                             "expires_in": 300})
        auth = request.headers.get("authorization", "")
        name = request.url.path.split("/")[2]
        need = "pull,push" if request.method in ("POST", "PUT", "PATCH") else "pull"
        if f"repository:{name}:{need}" not in auth and f"repository:{name}:pull,push" not in auth:
            challenge = f'Bearer realm="http://auth.test/token",service="t",scope="repository:{name}:{need}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": f"/v2/{name}/blobs/uploads/u1"})
        return httpx.Response(201)

    async def scenario() -> None:
        from registry.replication.remote import RemoteSide
        from registry.replication.rules import Remote
        from storage.digests import parse_digest

        side = RemoteSide(Remote("t", "http://there.test", "u", "p"),
                          httpx.AsyncClient(transport=httpx.MockTransport(handler)))

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"data"

        digest = parse_digest(sha256(b"data"))
        for _ in range(2):
            assert not await side.has_blob("app", digest)
            await side.write_blob("app", digest, 4, chunks())
        await side.close()

    run(scenario())
    assert issued == [["repository:app:pull"], ["repository:app:pull,push"]]
