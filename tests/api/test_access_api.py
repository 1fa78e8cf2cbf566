"""Users, teams and namespaces from the database (``auth.database``) through the ASGI app: the /api/v1
management API, what /v2, the catalog and search then allow, bad input, and the database's faults."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import event
from starlette.testclient import TestClient

from auth.terms import OPERATOR
from registry.cli import main
from registry.config import parse
from registry.http.app import create_app
from storage.metrics import database_transactions
from tests.api.conftest import image_manifest, sha256
from tests.faultproxy import FaultProxy
from tests.postgres import PostgresServer

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def make_app(root: Path, auth: dict[str, Any] | None = None, database: dict[str, Any] | None = None) -> TestClient:
    raw: dict[str, Any] = {"storage": {"filesystem": {"rootdirectory": str(root)}},
                           "auth": auth if auth is not None else {"database": {}}}
    if database:
        raw["database"] = database
    app = create_app(parse(raw))
    management = app.registry.management
    assert management is not None
    management.cost = 4
    return TestClient(app, base_url="http://registry.test")


def bootstrap(client: TestClient) -> None:
    """alice is the first admin (as `moorage user add alice --admin` makes her)."""
    management = client.app.registry.management  # type: ignore[attr-defined]
    asyncio.run(management.create_user(OPERATOR, "alice", PASSWORDS["alice"], admin=True))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_app(tmp_path / "root") as c:
        bootstrap(c)
        yield c


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["code"] == code, body
    return body["errors"][0]["message"]


def company(c: TestClient) -> None:
    """The issue's example: bob and carol in payments-devs (developer on payments), dave a reader, erin outside."""
    admin = basic("alice")
    for name in ("bob", "carol", "dave", "erin"):
        ok(c.post("/api/v1/users", json={"name": name, "password": PASSWORDS[name]}, headers=admin), 201)
    ok(c.post("/api/v1/teams", json={"name": "payments-devs", "members": ["bob", "carol"]}, headers=admin), 201)
    ok(c.post("/api/v1/namespaces", json={"path": "payments"}, headers=admin), 201)
    ok(c.put("/api/v1/namespaces/payments/_members/users/carol", json={"role": "owner"}, headers=admin))
    carol = basic("carol")
    ok(c.put("/api/v1/namespaces/payments/_members/teams/payments-devs", json={"role": "developer"}, headers=carol))
    ok(c.put("/api/v1/namespaces/payments/_members/users/dave", json={"role": "reader"}, headers=carol))


def push(c: TestClient, user: str, name: str, tag: str) -> Any:
    headers = basic(user)
    body = image_manifest(_Authed(c, headers), name)
    return c.put(f"/v2/{name}/manifests/{tag}", content=body,
                 headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def start_upload(c: TestClient, user: str, name: str) -> Any:
    return c.post(f"/v2/{name}/blobs/uploads/", headers=basic(user))


class _Authed:
    """A TestClient whose requests carry the given headers (for the image helpers of tests/api)."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers, **kwargs)


def test_an_organisation_end_to_end(client: TestClient) -> None:
    c = client
    company(c)
    ok(push(c, "bob", "payments/api", "1.0"), 201)
    assert ok(c.get("/v2/payments/api/tags/list", headers=basic("dave")))["tags"] == ["1.0"]
    error(start_upload(c, "dave", "payments/api"), 403, "DENIED")
    error(c.get("/v2/payments/api/tags/list", headers=basic("erin")), 403, "DENIED")
    error(c.get("/v2/payments/api/tags/list"), 401, "UNAUTHORIZED")
    ok(push(c, "erin", "erin/tool", "1"), 201)  # her own namespace
    assert ok(c.get("/v2/_catalog", headers=basic("erin")))["repositories"] == ["erin/tool"]
    assert ok(c.get("/v2/_catalog", headers=basic("dave")))["repositories"] == ["payments/api"]
    assert ok(c.get("/v2/_catalog", headers=basic("alice")))["repositories"] == ["erin/tool", "payments/api"]
    assert [r["name"] for r in ok(c.get("/v1/search?q=api", headers=basic("erin")))["results"]] == []
    assert [r["name"] for r in ok(c.get("/v1/search?q=api", headers=basic("dave")))["results"]] == ["payments/api"]
    usage = ok(c.get("/api/v1/usage", headers=basic("erin")))
    assert "payments/api" not in json.dumps(usage)
    account = ok(c.get("/api/v1/account", headers=basic("bob")))
    assert account["teams"] == ["payments-devs"] and {"path": "payments", "role": "developer"} in account["namespaces"]
    # revoking the team: bob's next push is refused at once on this replica
    ok(c.delete("/api/v1/namespaces/payments/_members/teams/payments-devs", headers=basic("carol")), 204)
    error(start_upload(c, "bob", "payments/api"), 403, "DENIED")
    # a public namespace: anonymous pulls
    ok(c.patch("/api/v1/namespaces/payments", json={"public": True}, headers=basic("carol")))
    assert ok(c.get("/v2/payments/api/tags/list"))["tags"] == ["1.0"]


def test_disabling_or_a_new_password_refuses_the_next_request(client: TestClient) -> None:
    c = client
    company(c)
    ok(c.get("/v2/", headers=basic("bob")))
    ok(c.patch("/api/v1/users/bob", json={"password": "bob-new-pw"}, headers=basic("bob")))
    error(c.get("/v2/", headers=basic("bob")), 401, "UNAUTHORIZED")
    ok(c.get("/v2/", headers=basic("bob", "bob-new-pw")))
    ok(c.patch("/api/v1/users/bob", json={"disabled": True}, headers=basic("alice")))
    error(c.get("/v2/", headers=basic("bob", "bob-new-pw")), 401, "UNAUTHORIZED")
    error(c.get("/api/v1/account", headers=basic("bob", "bob-new-pw")), 401, "UNAUTHORIZED")


def test_a_user_made_on_another_replica_logs_in_at_once(tmp_path: Path) -> None:
    """B's snapshot was confirmed a moment ago and its next poll has not run: bob, made through A (as
    the CLI or another replica makes a user), still logs in on B at once, as does a new password."""
    database = {"url": f"sqlite:///{tmp_path / 'shared.db'}"}
    with make_app(tmp_path / "root", database=database) as a, make_app(tmp_path / "root", database=database) as b:
        bootstrap(a)
        ok(b.get("/v2/", headers=basic("alice")))
        policy = b.app.registry.policy  # type: ignore[attr-defined]
        policy.confirmed = time.monotonic() + 3600  # as if B's poller had confirmed it just now
        ok(a.post("/api/v1/users", json={"name": "bob", "password": "bob-pw"}, headers=basic("alice")), 201)
        ok(b.get("/v2/", headers=basic("bob")))
        ok(a.patch("/api/v1/users/bob", json={"password": "bob-new-pw"}, headers=basic("bob")))
        ok(b.get("/v2/", headers=basic("bob", "bob-new-pw")))
        error(b.get("/v2/", headers=basic("bob")), 401, "UNAUTHORIZED")


def test_security_rules(client: TestClient) -> None:
    c = client
    company(c)
    error(c.post("/api/v1/users", json={"name": "mallory", "password": "x"}, headers=basic("bob")), 403, "DENIED")
    error(c.post("/api/v1/teams", json={"name": "mine"}, headers=basic("carol")), 403, "DENIED")
    error(c.put("/api/v1/namespaces/payments/_members/users/erin", json={"role": "reader"}, headers=basic("bob")),
          403, "DENIED")  # bob is a developer there
    error(c.patch("/api/v1/users/alice", json={"admin": False}, headers=basic("alice")), 409, "CONFLICT")
    error(c.delete("/api/v1/users/alice", headers=basic("alice")), 409, "CONFLICT")
    error(c.get("/api/v1/users", headers=basic("bob")), 403, "DENIED")
    error(c.get("/api/v1/namespaces/payments", headers=basic("erin")), 404, "NOT_FOUND")
    r = c.get("/api/v1/users")
    error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    error(c.get("/api/v1/users", headers=basic("alice", "wrong")), 401, "UNAUTHORIZED")


def test_bad_input_is_a_clear_4xx(client: TestClient) -> None:
    c = client
    company(c)
    admin = basic("alice")
    cases = [
        (c.put("/api/v1/namespaces/payments/_members/users/bob", json={"role": "boss"}, headers=admin),
         400, "INVALID_REQUEST", "unknown role"),
        (c.post("/api/v1/namespaces", json={"path": "payments/"}, headers=admin), 409, "CONFLICT", "exists"),
        (c.post("/api/v1/namespaces", json={"path": "bob"}, headers=basic("carol")), 409, "CONFLICT", "exists"),
        (c.post("/api/v1/users", json={"name": "a/b", "password": "x"}, headers=admin),
         400, "INVALID_REQUEST", "invalid user name"),
        (c.post("/api/v1/teams", json={"name": "all", "members": [f"u{i}" for i in range(10_000)]}, headers=admin),
         400, "INVALID_REQUEST", "at most 5000 members"),
        (c.post("/api/v1/users", content=b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}', headers=admin),
         413, "INVALID_REQUEST", "larger than"),
        (c.post("/api/v1/users", content=b"not json", headers=admin), 400, "INVALID_REQUEST", "not JSON"),
        (c.post("/api/v1/users", json=["x"], headers=admin), 400, "INVALID_REQUEST", "JSON object"),
        (c.post("/api/v1/users", json={"name": "x", "root": True}, headers=admin), 400, "INVALID_REQUEST",
         "unknown field"),
        (c.post("/api/v1/users", json={"name": 5}, headers=admin), 400, "INVALID_REQUEST", "wrong type"),
        (c.patch("/api/v1/namespaces/payments", json={"quota": True}, headers=admin), 400, "INVALID_REQUEST",
         "number"),
        (c.patch("/api/v1/namespaces/payments", json={"retention": {"keepnewest": "x"}}, headers=admin),
         400, "INVALID_REQUEST", "retention: keepnewest"),
        (c.get("/api/v1/users?n=abc", headers=admin), 400, "PAGINATION_NUMBER_INVALID", ""),
        (c.get("/api/v1/changes?last=x", headers=admin), 400, "INVALID_REQUEST", "change id"),
        (c.put("/api/v1/namespaces/payments/_members/robots/x", json={"role": "reader"}, headers=admin),
         404, "NOT_FOUND", "users/NAME"),
        (c.post("/api/v1/namespaces/payments", json={}, headers=admin), 405, "UNSUPPORTED", "not allowed"),
        (c.get("/api/v1/namespaces/Bad..Path", headers=admin), 400, "INVALID_REQUEST", "invalid namespace"),
    ]
    for response, status, code, message in cases:
        assert message in error(response, status, code)


def test_paging_and_the_change_log(client: TestClient) -> None:
    c = client
    admin = basic("alice")
    for i in range(5):
        ok(c.post("/api/v1/users", json={"name": f"user{i}"}, headers=admin), 201)
    first = c.get("/api/v1/users?n=2", headers=admin)
    assert [u["name"] for u in ok(first)["users"]] == ["alice", "user0"]
    assert first.headers["Link"] == '</api/v1/users?last=user0&n=2>; rel="next"'
    last = c.get("/api/v1/users?n=2&last=user3", headers=admin)
    assert [u["name"] for u in ok(last)["users"]] == ["user4"] and "Link" not in last.headers
    changes = ok(c.get("/api/v1/changes?n=3", headers=admin))["changes"]
    assert [(ch["action"], ch["target"]) for ch in changes] == [
        ("namespace.create", "user4"), ("user.create", "user4"), ("namespace.create", "user3")]
    assert changes[1]["actor"] == "alice" and changes[1]["address"] and "password" not in json.dumps(changes)


def test_a_warm_pull_makes_no_database_query(tmp_path: Path) -> None:
    with make_app(tmp_path / "root") as c:
        bootstrap(c)
        company(c)
        ok(push(c, "bob", "payments/api", "1.0"), 201)
        registry = c.app.registry  # type: ignore[attr-defined]
        headers = {**basic("dave"), "Accept": "application/vnd.oci.image.manifest.v1+json"}
        ok(c.get("/v2/payments/api/manifests/1.0", headers=headers))  # warm: the password verified once
        time.sleep(0.6)  # the last login is recorded meanwhile
        statements: list[str] = []
        event.listen(registry.database.engine(), "before_cursor_execute",
                     lambda conn, cursor, statement, *args: statements.append(statement))
        before = transactions()
        started = time.monotonic()
        for _ in range(200):
            ok(c.get("/v2/payments/api/manifests/1.0", headers=headers))
        time.sleep(0.6)
        elapsed = time.monotonic() - started
        polls = [s for s in statements if "FROM feed" in s]
        queries = [s for s in statements if "FROM feed" not in s and s not in ("BEGIN", "COMMIT")]
        assert queries == [], f"warm pulls queried the database: {queries[:3]}"
        assert 1 <= len(polls) <= elapsed / 0.5 + 2  # only the change feed's polls, twice a second
        moved = {kind: count - before.get(kind, 0) for kind, count in transactions().items()}
        assert moved.get("read", 0) == moved.get("write", 0) == 0 and 1 <= moved["version"] <= elapsed / 0.5 + 2, moved


def transactions() -> dict[str, float]:
    """moorage_database_transactions_total by kind, as /metrics shows it (python -m bench access reads it)."""
    return {sample.labels["kind"]: sample.value for metric in database_transactions.collect()
            for sample in metric.samples if sample.name.endswith("_total")}


def test_the_database_down_is_a_prompt_503_then_recovers(tmp_path: Path, postgres_server: PostgresServer,
                                                          postgres_url: str) -> None:
    proxy = FaultProxy(f"127.0.0.1:{postgres_server.port}")
    url = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    try:
        with make_app(tmp_path / "root", database={"url": url, "timeout": "2s"}) as c:
            bootstrap(c)
            company(c)
            ok(c.get("/v2/", headers=basic("bob")))
            proxy.set("hang")
            time.sleep(2)  # the snapshot ages past what decisions accept
            for request in (lambda: c.get("/v2/payments/api/tags/list", headers=basic("bob")),
                            lambda: c.get("/api/v1/account", headers=basic("bob")),
                            lambda: c.get("/v2/payments/api/tags/list", headers=basic("bob", "wrong"))):
                started = time.monotonic()
                r = request()
                assert time.monotonic() - started < 10
                assert error(r, 503, "UNAVAILABLE") and int(r.headers["Retry-After"]) >= 1
            proxy.set("pass")
            deadline = time.monotonic() + 20
            while c.get("/v2/payments/api/tags/list", headers=basic("bob")).status_code == 503:
                assert time.monotonic() < deadline, "did not recover when the database came back"
                time.sleep(0.3)
            assert c.get("/v2/payments/api/tags/list", headers=basic("bob")).status_code == 404  # no repo yet
    finally:
        proxy.stop()


def test_without_auth_database_the_api_says_so(tmp_path: Path) -> None:
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}}
    with TestClient(create_app(parse(raw)), base_url="http://registry.test") as c:
        assert "auth.database" in error(c.get("/api/v1/users"), 404, "UNSUPPORTED")
    assert not (tmp_path / "root" / "moorage.db").exists()


def test_s3_storage_needs_a_database_url(tmp_path: Path) -> None:
    raw = {"storage": {"s3": {"bucket": "b", "region": "us-east-1"}}, "auth": {"database": {}}}
    with pytest.raises(ValueError, match="database.url: required with s3 storage"):
        create_app(parse(raw))


def manifest_for(c: TestClient, user: str, name: str, layer: bytes) -> bytes:
    return image_manifest(_Authed(c, basic(user)), name, layers=[layer])


def put(c: TestClient, user: str, name: str, tag: str, body: bytes) -> Any:
    return c.put(f"/v2/{name}/manifests/{tag}", content=body,
                 headers={**basic(user), "Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def test_immutable_tags_hold_except_for_owners(client: TestClient) -> None:
    c = client
    company(c)
    ok(c.put("/api/v1/namespaces/payments/_members/users/erin", json={"role": "maintainer"}, headers=basic("carol")))
    ok(c.patch("/api/v1/namespaces/payments", json={"immutable_tags": ["v*"]}, headers=basic("erin")))
    first, second = (manifest_for(c, "bob", "payments/api", layer) for layer in (b"one", b"two"))
    ok(put(c, "bob", "payments/api", "v1.0", first), 201)
    ok(put(c, "bob", "payments/api", "v1.0", first), 201)  # the same manifest again: no change
    message = error(put(c, "bob", "payments/api", "v1.0", second), 403, "DENIED")
    assert "tag v1.0 is immutable" in message and "payments" in message
    ok(put(c, "bob", "payments/api", "latest", first), 201)
    ok(put(c, "bob", "payments/api", "latest", second), 201)  # latest is not immutable
    assert "immutable" in error(c.delete("/v2/payments/api/manifests/v1.0", headers=basic("erin")), 403, "DENIED")
    digest = c.head("/v2/payments/api/manifests/v1.0", headers=basic("erin")).headers["Docker-Content-Digest"]
    assert "immutable" in error(c.delete(f"/v2/payments/api/manifests/{digest}", headers=basic("erin")), 403,
                                "DENIED")  # by digest: the tags pointing at it go too
    ok(put(c, "carol", "payments/api", "v1.0", second), 201)  # the owner may move it
    assert c.delete("/v2/payments/api/manifests/v1.0", headers=basic("carol")).status_code == 202
    ok(c.post("/api/v1/namespaces", json={"path": "payments/tools"}, headers=basic("carol")), 201)
    first, second = (manifest_for(c, "carol", "payments/tools/x", layer) for layer in (b"one", b"two"))
    ok(put(c, "carol", "payments/tools/x", "v2", second), 201)
    ok(put(c, "carol", "payments/tools/x", "v2", first), 201)  # carol owns the namespace
    ok(c.put("/api/v1/namespaces/payments/tools/_members/users/bob", json={"role": "developer"},
             headers=basic("carol")))
    assert "immutable" in error(put(c, "bob", "payments/tools/x", "v2", second), 403, "DENIED")  # from above


def test_a_namespace_quota_refuses_what_goes_over(client: TestClient) -> None:
    c = client
    company(c)
    ok(c.patch("/api/v1/namespaces/payments", json={"quota": 1000}, headers=basic("alice")))
    ok(put(c, "bob", "payments/api", "small", manifest_for(c, "bob", "payments/api", b"x" * 100)), 201)
    data = b"y" * 2000
    r = c.post(f"/v2/payments/api/blobs/uploads/?digest={sha256(data)}", content=data, headers=basic("bob"))
    assert "quota exceeded" in error(r, 403, "DENIED")
    ok(c.patch("/api/v1/namespaces/payments", json={"quota": None}, headers=basic("alice")))
    r = c.post(f"/v2/payments/api/blobs/uploads/?digest={sha256(data)}", content=data, headers=basic("bob"))
    assert r.status_code == 201, r.text


def test_namespace_retention_from_the_database(client: TestClient, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A namespace's retention (set by a maintainer through the API) expires tags in `moorage retention`
    with the closest namespace deciding; repositories no namespace's retention covers keep every tag."""
    c = client
    company(c)
    config = tmp_path / "retention.yml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")},
                                                  "maintenance": {"gc": {"grace": "0s"}}},
                                      "auth": {"database": {}}}))
    assert main(["retention", "-c", str(config)]) == 2
    assert "no namespace in the database sets a retention" in capsys.readouterr().err
    ok(c.put("/api/v1/namespaces/payments/_members/users/erin", json={"role": "maintainer"}, headers=basic("carol")))
    ok(c.patch("/api/v1/namespaces/payments", json={"retention": {"keepnewest": 1, "protect": ["v*"]}},
               headers=basic("erin")))
    ok(c.post("/api/v1/namespaces", json={"path": "payments/tools"}, headers=basic("carol")), 201)
    ok(c.patch("/api/v1/namespaces/payments/tools", json={"retention": {"keepnewest": 2}}, headers=basic("carol")))
    pushed = {"payments/api": ["old", "older", "v1", "newest"], "payments/tools/x": ["a", "b", "c"],
              "alice/app": ["x", "y"]}
    for name, tags in pushed.items():
        user = "alice" if name.startswith("alice") else "carol"
        for tag in tags:
            ok(put(c, user, name, tag, manifest_for(c, user, name, tag.encode())), 201)
            time.sleep(0.1)  # distinct push times: keepnewest orders by them

    def tags(name: str) -> list[str]:
        return ok(c.get(f"/v2/{name}/tags/list", headers=basic("alice")))["tags"]

    assert main(["retention", "-c", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for gone in ("payments/api:old (", "payments/api:older (", "payments/tools/x:a ("):
        assert f"would remove tag {gone}" in out, out
    assert "tags: 3 would remove" in out and tags("payments/api") == ["newest", "old", "older", "v1"]
    assert main(["retention", "-c", str(config)]) == 0
    assert tags("payments/api") == ["newest", "v1"]  # keepnewest 1, v* protected
    assert tags("payments/tools/x") == ["b", "c"]  # its own namespace's keepnewest 2, not payments'
    assert tags("alice/app") == ["x", "y"]  # no retention covers it
    ok(c.patch("/api/v1/namespaces/payments", json={"retention": None}, headers=basic("erin")))
    ok(c.patch("/api/v1/namespaces/payments/tools", json={"retention": None}, headers=basic("carol")))
    assert main(["retention", "-c", str(config)]) == 2  # the change reached the command
