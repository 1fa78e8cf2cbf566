"""Metrics, request ids, the per-request log event and the audit trail, through the ASGI app."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from registry.config import Config, parse
from registry.events.lag import watch_lag
from registry.events.logs import JSONFormatter, TextFormatter
from registry.http.app import create_app
from tests.api.conftest import image_manifest, make_client, push_blob, sha256
from tests.auth.conftest import API_RULES, bcrypt_line

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metrics_client(root: Path, **overrides: object) -> TestClient:
    return make_client(root, http={"metrics": {"enabled": True}}, **overrides)


def scrape(client: TestClient) -> dict[str, list]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(r.text)}


def test_requests_counted_by_route_template_with_bytes_and_durations(tmp_path: Path) -> None:
    before = {
        "puts": sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="PUT", status="201"),
        "gets": sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="GET", status="200"),
        "unknown": sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="GET", status="404"),
        "hist": sample("moorage_http_request_duration_seconds_count", route=MANIFEST_ROUTE, method="GET"),
        "in": sample("moorage_http_request_bytes_total", route=MANIFEST_ROUTE, method="PUT", status="201"),
        "out": sample("moorage_http_response_bytes_total", route=MANIFEST_ROUTE, method="GET", status="200"),
        "writes": sample("moorage_storage_operations_total", driver="filesystem", operation="put_content"),
        "latency": sample("moorage_storage_operation_duration_seconds_count", driver="filesystem",
                          operation="put_content"),
    }
    with metrics_client(tmp_path) as client:
        manifest = image_manifest(client, "team/app")
        assert client.put("/v2/team/app/manifests/v1", content=manifest,
                          headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        for _ in range(3):
            assert client.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
        assert client.get("/v2/team/other/manifests/v1").status_code == 404
        families = scrape(client)
    assert sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="PUT", status="201") == before["puts"] + 1
    assert sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="GET", status="200") == before["gets"] + 3
    assert sample("moorage_http_requests_total", route=MANIFEST_ROUTE, method="GET",
                  status="404") == before["unknown"] + 1
    assert sample("moorage_http_request_duration_seconds_count", route=MANIFEST_ROUTE,
                  method="GET") == before["hist"] + 4
    assert sample("moorage_http_request_bytes_total", route=MANIFEST_ROUTE, method="PUT",
                  status="201") == before["in"] + len(manifest)
    assert sample("moorage_http_response_bytes_total", route=MANIFEST_ROUTE, method="GET",
                  status="200") == before["out"] + 3 * len(manifest)
    assert sample("moorage_storage_operations_total", driver="filesystem", operation="put_content") > before["writes"]
    assert sample("moorage_storage_operation_duration_seconds_count", driver="filesystem",
                  operation="put_content") > before["latency"]
    # the exposition served at /metrics has them too
    assert any(s.labels.get("route") == MANIFEST_ROUTE for s in families["moorage_http_requests"])
    assert "moorage_http_request_duration_seconds" in families
    assert "moorage_uploads_in_flight" in families


def test_a_thousand_repositories_make_no_new_label_values(tmp_path: Path) -> None:
    with metrics_client(tmp_path) as client:
        data = b"one layer"
        for i in range(1000):
            name = f"cardinality/repo-{i:04d}"
            if i % 100 == 0:
                push_blob(client, name, data)
            client.head(f"/v2/{name}/blobs/{sha256(data)}")
            client.get(f"/v2/{name}/tags/list")
            client.get(f"/v2/{name}/manifests/latest")
        text = client.get("/metrics").text
    assert "repo-0" not in text and sha256(data) not in text
    routes = set()
    series = 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("moorage_"):
                series += 1
                if "route" in s.labels:
                    routes.add(s.labels["route"])
    assert routes <= {"/v2/", "/v2/_catalog", "/v2/{name}/tags/list", MANIFEST_ROUTE, "/v2/{name}/blobs/uploads/",
                      "/v2/{name}/blobs/uploads/{upload}", "/v2/{name}/blobs/{digest}",
                      "/v2/{name}/referrers/{digest}", "/metrics", "/livez", "/healthz", "/readyz", "unmatched",
                      "/auth/token", "/api/v1/tokens", "/api/v1/tokens/{id}",
                      "/api/v1/namespaces/{path:path}/robots", "/api/v1/robots/{name}",
                      "/api/v1/robots/{name}/tokens", "/api/v1/usage", "/v1/search", "/", "/ui",
                      # fixed routes the test directories run before this one (tests/auth) call
                      "/api/v1/users", "/api/v1/teams", "/api/v1/namespaces", "/api/v1/account",
                      "/api/v1/replication/rules", "/api/v1/replication/rules/{rule}",
                      "/api/v1/replication/rules/{rule}/executions",
                      "/api/v1/replication/rules/{rule}/executions/{execution}",
                      "/api/v1/replication/rules/{rule}/executions/{execution}/items"}
    assert MANIFEST_ROUTE in routes and "/v2/{name}/tags/list" in routes
    assert series < 1500  # every moorage series of the whole test run, not one per repository


def test_metrics_off_by_default(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        assert client.get("/metrics").status_code == 404
        assert type(client.app.registry.driver).__name__ == "FilesystemDriver"  # no wrapper: no cost


def test_metrics_on_the_main_address_need_admin_or_the_metrics_rule(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("\n".join(bcrypt_line(u, f"{u}-pw") for u in ("alice", "bob", "carol")) + "\n")
    access = {**API_RULES, "metrics": ["carol"]}
    with metrics_client(tmp_path / "root", auth={"htpasswd": {"path": str(htpasswd)}, "access": access}) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", auth=("bob", "bob-pw")).status_code == 403
        assert client.get("/metrics", auth=("bob", "wrong")).status_code == 401
        assert client.get("/metrics", auth=("alice", "alice-pw")).status_code == 200
        r = client.get("/metrics", auth=("carol", "carol-pw"))
        assert r.status_code == 200 and "moorage_http_requests_total" in r.text


def test_request_id_generated_or_taken_from_a_trusted_proxy(tmp_path: Path) -> None:
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path)}}, "http": {"trustedproxies": ["10.0.0.0/8"]}}
    with TestClient(create_app(parse(raw)), client=("10.1.2.3", 4000)) as proxied:
        assert proxied.get("/v2/", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
        bad = proxied.get("/v2/", headers={"X-Request-Id": "x" * 500}).headers["x-request-id"]
        assert len(bad) == 36  # too long: a new one instead
    with TestClient(create_app(parse(raw)), client=("192.168.1.9", 4000)) as direct:
        first = direct.get("/v2/", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        second = direct.get("/v2/").headers["x-request-id"]
        assert first != "abc-123" and len(first) == 36 and first != second


def test_one_log_event_per_request_in_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="moorage.access")
    with make_client(tmp_path) as client:
        digest = push_blob(client, "team/app", b"some bytes")
        r = client.get(f"/v2/team/app/blobs/{digest}", headers={"User-Agent": "test-agent/1"})
    records = [rec for rec in caplog.records if rec.name == "moorage.access"]
    assert len(records) == 2
    line = json.loads(JSONFormatter({"service": "registry"}).format(records[1]))
    assert line["level"] == "info" and line["logger"] == "moorage.access" and line["service"] == "registry"
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["method"] == "GET" and line["route"] == "/v2/{name}/blobs/{digest}"
    assert line["repository"] == "team/app" and line["status"] == 200 and line["bytes"] == len(b"some bytes")
    assert line["user_agent"] == "test-agent/1" and 0 < line["duration"] < 10
    assert f'"GET /v2/team/app/blobs/{digest} HTTP/1.1" 200' in line["msg"]  # the common log format's request
    text = TextFormatter({}).format(records[0])
    assert "moorage.access:" in text and "status=201" in text and "route=/v2/{name}/blobs/uploads/" in text


def test_log_formatter_and_fields_from_config() -> None:
    config = parse({"log": {"formatter": "json", "fields": {"service": "registry", "env": "prod"}}})
    assert config.log_formatter == "json" and config.log_fields == {"service": "registry", "env": "prod"}
    assert parse({"log": {"formatter": "logstash"}}).log_formatter == "json"
    assert Config().log_formatter == "text"
    for bad in ({"formatter": "xml"}, {"fields": ["a"]}, {"audit": {"file": "x"}}):
        with pytest.raises(ValueError, match="log."):
            parse({"log": bad})
    with pytest.raises(ValueError, match="http.debug.prometheus.enabled: needs http.debug.addr"):
        parse({"http": {"debug": {"prometheus": {"enabled": True}}}})


def test_audit_trail_of_pushes_deletes_mounts_and_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="moorage.audit")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(bcrypt_line("alice", "alice-pw") + "\n" + bcrypt_line("bob", "bob-pw") + "\n")
    sink = tmp_path / "audit.jsonl"
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "log": {"audit": {"path": str(sink)}},
           "auth": {"htpasswd": {"path": str(htpasswd)}, "access": API_RULES}}
    with TestClient(create_app(parse(raw)), client=("192.0.2.7", 5555)) as client:
        alice, bob = ("alice", "alice-pw"), ("bob", "bob-pw")
        digest = sha256(b"layer")
        assert client.post(f"/v2/alice/app/blobs/uploads/?digest={digest}", content=b"layer",
                           auth=alice).status_code == 201
        assert client.post(f"/v2/bob/app/blobs/uploads/?mount={digest}&from=alice/app", auth=alice).status_code == 201
        assert client.delete(f"/v2/alice/app/blobs/{digest}", auth=alice).status_code == 202
        assert client.post("/v2/alice/app/blobs/uploads/", auth=bob).status_code == 403
        assert client.get("/v2/", auth=("bob", "not-bobs-password")).status_code == 401
        assert client.get("/v2/").status_code == 401  # the challenge: not a refusal worth auditing
        assert client.get(f"/v2/alice/app/blobs/{digest}", auth=alice).status_code == 404  # reads: not audited
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [(e["audit"], e["user"]) for e in lines] == [
        ("push", "alice"), ("mount", "alice"), ("delete", "alice"), ("refused", "bob"), ("refused", "bob")]
    push, mount, delete, refused, wrong_password = lines
    assert push["repository"] == "alice/app" and push["digest"] == digest and push["kind"] == "blob"
    assert mount["repository"] == "bob/app" and mount["from_repository"] == "alice/app"
    assert delete["status"] == 202 and delete["remote_addr"] == "192.0.2.7"
    assert refused["scopes"] == ["repository:alice/app:pull", "repository:alice/app:push"] and refused["status"] == 403
    assert wrong_password["status"] == 401 and "not-bobs-password" not in sink.read_text()
    assert all(e["request_id"] and e["time"] for e in lines)
    assert [r.fields["audit"] for r in caplog.records if r.name == "moorage.audit"] == [e["audit"] for e in lines]


def test_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    import re

    import auth.metrics  # noqa: F401 - registers the token counters
    import storage.metrics  # noqa: F401

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"moorage_[a-z0-9_]+", e)}
    known = {family.name + ("_total" if family.type == "counter" else "") for family in REGISTRY.collect()}
    assert used and used <= known, sorted(used - known)
    assert len(dashboard["panels"]) >= 10 and all(p["targets"] for p in dashboard["panels"])


def test_uploads_and_requests_in_flight_while_a_chunk_streams(tmp_path: Path) -> None:
    import asyncio

    import httpx

    seen: list[float] = []

    async def body():
        yield b"first part "
        seen.append(sample("moorage_uploads_in_flight"))
        seen.append(sample("moorage_http_requests_in_flight"))
        yield b"second part"

    async def upload() -> None:
        app = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path)}},
                                "http": {"metrics": {"enabled": True}}}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry.test") as c:
            started = await c.post("/v2/team/app/blobs/uploads/")
            assert started.status_code == 202
            r = await c.patch(started.headers["location"], content=body())
            assert r.status_code == 202, r.text
            await app.registry.close()

    before = sample("moorage_uploads_in_flight")
    asyncio.run(upload())
    assert seen == [before + 1, seen[1]] and seen[1] >= 1
    assert sample("moorage_uploads_in_flight") == before


def test_gc_runs_and_quota_usage_are_measured(tmp_path: Path) -> None:
    import asyncio
    import time

    from storage.driver.filesystem import FilesystemDriver
    from storage.gc import CLOCK_SLACK, GarbageCollector

    root = tmp_path / "root"
    before = (sample("moorage_gc_runs_total", mode="gc", result="ok"),
              sample("moorage_gc_bytes_freed_total", mode="gc"),
              sample("moorage_gc_objects_deleted_total", mode="gc", kind="blob"))
    storage = {"filesystem": {"rootdirectory": str(root)}, "maintenance": {"gc": {"grace": "0s"}},
               "quotas": [{"namespaces": ["team"], "limit": 10_000}]}
    with make_client(root, storage=storage) as client:
        gone = b"gone" * 1000
        digest = push_blob(client, "team/app", gone)
        assert sample("moorage_quota_limit_bytes", namespace="team") == 10_000
        assert sample("moorage_quota_used_bytes", namespace="team") == 0  # measured before the blob counted
        push_blob(client, "team/app", b"second")
        assert sample("moorage_quota_used_bytes", namespace="team") == len(gone)
        assert client.delete(f"/v2/team/app/blobs/{digest}").status_code == 202
    time.sleep(1.1 + CLOCK_SLACK)
    result = asyncio.run(GarbageCollector(FilesystemDriver(str(root)), grace=0).run())
    assert result.bytes_freed >= len(gone)
    assert sample("moorage_gc_runs_total", mode="gc", result="ok") == before[0] + 1
    assert sample("moorage_gc_bytes_freed_total", mode="gc") == before[1] + result.bytes_freed
    assert sample("moorage_gc_objects_deleted_total", mode="gc", kind="blob") == before[2] + result.blobs_removed
    assert sample("moorage_gc_duration_seconds_count", mode="gc") >= 1



def test_query_values_are_not_logged_but_the_apis_own_parameters_are(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A secret in the query (``?password=``) never reaches the access log; the parameters the registry
    API defines keep their values (containerd's ``?ns=`` says which upstream a mirror served)."""
    caplog.set_level(logging.INFO, logger="moorage.access")
    with make_client(tmp_path) as client:
        client.get("/v2/", params={"password": "query-secret-1", "token": "query-secret-2"})
        client.get("/v2/team/app/tags/list", params={"n": "10", "last": "a", "ns": "docker.io"})
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "moorage.access"]
    assert len(lines) == 2
    assert "query-secret" not in caplog.text
    assert '"GET /v2/?password=REDACTED&token=REDACTED HTTP/1.1"' in lines[0], lines[0]
    assert '"GET /v2/team/app/tags/list?n=10&last=a&ns=docker.io HTTP/1.1"' in lines[1], lines[1]


def test_a_held_event_loop_is_measured_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 24: the lag of the event loop is a metric (and a warning when a request held it a second)."""
    held_before = sample("moorage_event_loop_lag_seconds_count") - sample("moorage_event_loop_lag_seconds_bucket",
                                                                          le="0.5")

    async def hold_the_loop() -> None:
        watcher = asyncio.create_task(watch_lag(interval=0.05))
        await asyncio.sleep(0.2)
        time.sleep(1.2)  # what a CPU-heavy step run inline does to every other request
        await asyncio.sleep(0.2)
        watcher.cancel()

    with caplog.at_level(logging.WARNING, logger="moorage"):
        asyncio.run(hold_the_loop())
    held = sample("moorage_event_loop_lag_seconds_count") - sample("moorage_event_loop_lag_seconds_bucket", le="0.5")
    assert held - held_before == 1
    assert sample("moorage_event_loop_lag_last_seconds") < 0.5  # back to normal after
    assert any("event loop was held for 1." in r.getMessage() for r in caplog.records)
    samples = sample("moorage_event_loop_lag_seconds_count")
    with metrics_client(tmp_path / "root") as client:  # the app runs the watcher
        time.sleep(0.6)
        assert "moorage_event_loop_lag_seconds" in scrape(client)
    assert sample("moorage_event_loop_lag_seconds_count") > samples
