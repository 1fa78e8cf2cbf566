"""Replication inside the app: event rules fed by the notifications queue, schedules, manual runs through
/api/v1/replication and the web UI, admins only, and one replica at a time per rule."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from auth.htpasswd import set_password
from registry.config import parse
from registry.http.app import create_app
from registry.replication import runner as runner_module
from registry.replication.executions import ExecutionStore
from registry.replication.worker import RuleWorker
from storage import paths

from .conftest import OCI_CONFIG, OCI_MANIFEST, REMOTE_URL, asgi_client, push_image, sha256

MANIFEST_ACCEPT = {"accept": OCI_MANIFEST}


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {check}")


@pytest.fixture
def there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A remote Moorage the engine reaches in process; yields its data root."""
    root = tmp_path / "there"
    app = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    monkeypatch.setattr(runner_module, "remote_http", lambda remote, connections: asgi_client(app, REMOTE_URL))
    yield root


def tag_on(root: Path, name: str, tag: str) -> str | None:
    link = root / "docker/registry/v2/repositories" / name / "_manifests/tags" / tag / "current/link"
    return link.read_text() if link.exists() else None


def config(tmp_path: Path, rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "here")}},
            "replication": {"remotes": [{"name": "there", "url": REMOTE_URL}], "rules": rules,
                            "poll": "0.2s", "lease": "2s"}, **extra}


def push(client: TestClient, name: str, tag: str, layer: bytes) -> str:
    blobs = []
    for data, media_type in ((b'{"os":"linux","architecture":"amd64"}', OCI_CONFIG), (layer, "application/x.layer")):
        r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201, r.text
        blobs.append({"mediaType": media_type, "digest": sha256(data), "size": len(data)})
    doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[0], "layers": blobs[1:]}).encode()
    r = client.put(f"/v2/{name}/manifests/{tag}", content=doc, headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


def test_an_event_rule_copies_a_push_within_seconds_and_propagates_its_delete(tmp_path: Path, there: Path) -> None:
    rules = [{"name": "to-there", "direction": "push", "remote": "there", "repositories": ["payments/**"],
              "trigger": "event", "deletes": True}]
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"rule": "to-there", **labels}) or 0.0

    before = (sample("moorage_replication_lag_seconds_count"), sample("moorage_replication_items_total",
                                                                     outcome="copied"))
    with TestClient(create_app(parse(config(tmp_path, rules)))) as client:
        digest = push(client, "payments/api", "1.0", b"layer")
        push(client, "other/app", "1.0", b"not replicated")
        assert wait_for(lambda: tag_on(there, "payments/api", "1.0"), 5.0) == digest
        assert client.delete("/v2/payments/api/manifests/1.0").status_code == 202
        wait_for(lambda: tag_on(there, "payments/api", "1.0") is None, 5.0)
        assert tag_on(there, "other/app", "1.0") is None
        def finished() -> list[dict[str, Any]]:
            found = client.get("/api/v1/replication/rules/to-there/executions").json()["executions"]
            return found if found and all(e["state"] in ("succeeded", "failed") for e in found) else []

        executions = wait_for(finished)
        assert {e["trigger"] for e in executions} == {"event"}
        assert all(e["state"] == "succeeded" for e in executions), executions
        assert sample("moorage_replication_lag_seconds_count") >= before[0] + 1  # push -> copy, observed
        assert sample("moorage_replication_items_total", outcome="copied") == before[1] + 1
        assert sample("moorage_replication_executions_total", trigger="event", state="succeeded") >= 2
        queue = tmp_path / "here" / paths.replication_events("to-there").lstrip("/")
        assert not queue.exists() or not list(queue.iterdir())  # the events were taken off the queue


def test_a_scheduled_pull_rule_runs_on_its_interval(tmp_path: Path, there: Path) -> None:
    source = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(there)}}}))
    with TestClient(source) as remote_client:
        digest = push(remote_client, "vendor/tool", "2.0", b"tool")
    rules = [{"name": "from-there", "direction": "pull", "remote": "there", "repositories": ["vendor/*"],
              "destination": {"prefix": "mirror"}, "trigger": "schedule", "interval": "1s"}]
    with TestClient(create_app(parse(config(tmp_path, rules)))) as client:
        wait_for(lambda: client.get("/v2/mirror/vendor/tool/manifests/2.0", headers=MANIFEST_ACCEPT).status_code == 200)
        assert client.get("/v2/mirror/vendor/tool/manifests/2.0",
                          headers=MANIFEST_ACCEPT).headers["docker-content-digest"] == digest
        runs = wait_for(lambda: len([e for e in client.get("/api/v1/replication/rules/from-there/executions").json()
                                     ["executions"] if e["state"] == "succeeded"]) >= 2, 10.0)
        assert runs
        executions = client.get("/api/v1/replication/rules/from-there/executions").json()["executions"]
        assert {e["trigger"] for e in executions} == {"schedule"}
        assert executions[0]["counts"]["unchanged"] == 1  # later runs find it there already


def admin_config(tmp_path: Path, rules: list[dict[str, Any]]) -> dict[str, Any]:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "root", "rootpw", cost=4)
    set_password(htpasswd, "dev", "devpw", cost=4)
    auth = {"htpasswd": {"realm": "here", "path": str(htpasswd)},
            "access": {"admins": ["root"], "rules": [{"repositories": ["**"], "who": ["authenticated"],
                                                      "actions": ["*"]}]}}
    return config(tmp_path, rules, auth=auth)


def test_the_api_runs_rules_lists_executions_and_items_for_admins_only(tmp_path: Path, there: Path) -> None:
    rules = [{"name": "manual", "direction": "push", "remote": "there", "repositories": ["team/**"]}]
    with TestClient(create_app(parse(admin_config(tmp_path, rules)))) as client:
        root, dev = ("root", "rootpw"), ("dev", "devpw")
        client.auth = root
        push(client, "team/app", "v1", b"x")
        assert client.get("/api/v1/replication/rules", auth=None).status_code == 401
        refused = client.get("/api/v1/replication/rules", auth=dev)
        assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "DENIED"
        assert client.post("/api/v1/replication/rules/manual/executions", auth=dev).status_code == 403
        [rule] = client.get("/api/v1/replication/rules").json()["rules"]
        assert rule["name"] == "manual" and rule["latest"] is None and "password" not in str(rule)
        started = client.post("/api/v1/replication/rules/manual/executions")
        assert started.status_code == 202 and started.json()["state"] == "queued"
        location = started.headers["location"]
        done = wait_for(lambda: (e := client.get(location).json())["state"] == "succeeded" and e)
        assert done["counts"]["copied"] == 1 and done["planned"] == 1
        items = client.get(f"{location}/items").json()["items"]
        assert items[0]["source"] == "team/app" and items[0]["outcome"]["status"] == "copied"
        assert client.get(f"{location}/items", params={"status": "failed"}).json()["items"] == []
        missing = client.get("/api/v1/replication/rules/nope/executions")
        assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        assert client.get("/api/v1/replication/rules/manual/executions/nope").status_code == 404
        assert client.get("/api/v1/replication/rules/manual/executions", params={"n": "0"}).status_code == 400


def test_the_web_ui_lists_rules_and_runs_one_with_a_csrf_protected_form(tmp_path: Path, there: Path) -> None:
    rules = [{"name": "manual", "direction": "push", "remote": "there", "repositories": ["team/**"]}]
    with TestClient(create_app(parse(admin_config(tmp_path, rules))), base_url="http://here.test") as client:
        def login(user: str, password: str) -> None:
            page = client.get("/ui/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            r = client.post("/ui/login", data={"username": user, "password": password, "csrf": csrf},
                            follow_redirects=False)
            assert r.status_code == 303

        login("dev", "devpw")
        assert client.get("/ui/replication").status_code == 404
        assert "Replication</a>" not in client.get("/ui/").text
        login("root", "rootpw")
        page = client.get("/ui/replication")
        assert page.status_code == 200 and "manual" in page.text and "never run" in page.text
        assert 'href="/ui/replication"' in client.get("/ui/").text
        assert client.post("/ui/replication/manual/run", data={"csrf": "forged"}).status_code == 403
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        ran = client.post("/ui/replication/manual/run", data={"csrf": csrf}, follow_redirects=False)
        assert ran.status_code == 303 and "started=" in ran.headers["location"]
        execution = ran.headers["location"].split("started=")[1]
        wait_for(lambda: "succeeded" in client.get(f"/ui/replication/manual/{execution}").text)
        assert "No item failed" in client.get(f"/ui/replication/manual/{execution}").text
        assert execution in client.get("/ui/replication/manual").text


def test_one_replica_runs_a_rule_and_another_takes_over_after_the_lease_expires(tmp_path: Path, there: Path) -> None:
    """Two workers of one rule on one storage: the lease holder runs the queued execution; when it stops
    renewing (a dead replica), the other resumes it after the lease expired."""
    cfg = parse(config(tmp_path, [{"name": "r", "direction": "push", "remote": "there", "repositories": ["**"]}]))
    app = create_app(cfg)
    replication_config = cfg.replication.replication()
    assert replication_config is not None
    rule = replication_config.rules["r"]

    async def scenario() -> None:
        async with asgi_client(app, "http://here.test") as client:
            await push_image(client, "team/app", "v1", [b"layer"])
        store = ExecutionStore(app.registry.driver)
        first = RuleWorker(rule, app.registry, store, replication_config, None)
        second = RuleWorker(rule, app.registry, store, replication_config, None)
        execution = await store.create("r", "manual")
        assert await first.lease.hold() and not await second.lease.hold()
        await second.step()  # not the holder: does nothing
        assert (await store.load("r", execution.id)).state == "queued"  # type: ignore[union-attr]
        # the holder "dies" (stops renewing); the other takes over once the lease expired
        started = time.monotonic()
        while not await second.lease.hold():
            await asyncio.sleep(0.1)
        assert time.monotonic() - started >= 1.0
        await second.step()
        assert (await store.load("r", execution.id)).state == "succeeded"  # type: ignore[union-attr]
        for worker in (first, second):
            await worker.close()
        await app.registry.close()

    asyncio.run(scenario())
    assert tag_on(there, "team/app", "v1") is not None
