"""Access tokens and robots through the whole registry app: /api/v1/tokens, Basic on /v2 and the token
server with a token as the password, revocation, expiry, and no secret in logs, metrics or the audit trail."""

from __future__ import annotations

import datetime
import html
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from registry.config import parse
from registry.http.app import create_app
from tests.auth.app_helpers import add_namespace_owner, push_blob
from tests.auth.conftest import ISSUER, SERVICE, Signer

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
RULES = {"admins": ["alice"], "rules": [
    {"repositories": ["payments/**"], "who": ["bob"], "actions": ["pull", "push"]},
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
]}


def make_client(tmp_path: Path, auth: dict[str, Any], **extra: Any) -> TestClient:
    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "auth": auth, **extra}
    return TestClient(create_app(parse(raw)), base_url="http://registry.test")


@pytest.fixture
def client(tmp_path: Path, htpasswd_file: Path) -> Iterator[TestClient]:
    auth = {"htpasswd": {"path": str(htpasswd_file)}, "access": RULES, "accesstokens": {"peruser": 3}}
    with make_client(tmp_path, auth, log={"audit": {"path": str(tmp_path / "audit.jsonl")}},
                     http={"metrics": {"enabled": True}}) as c:
        yield c


def create(client: TestClient, auth: tuple[str, str], **body: Any) -> Any:
    return client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["pull"], **body}, auth=auth)


def code(response: Any) -> str:
    return response.json()["errors"][0]["code"]


def test_a_pull_token_scoped_to_payments(client: TestClient) -> None:
    r, _ = push_blob(client, "payments/api", b"layer", auth=BOB)
    assert r.status_code == 201
    r = create(client, BOB, repositories=["payments/**"], expires="2099-01-01T00:00:00Z")
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("moorage_pat_") and made["id"] in made["secret"]
    token = ("bob", made["secret"])
    _, digest = push_blob(client, "payments/api", b"layer", auth=BOB)
    assert client.get(f"/v2/payments/api/blobs/{digest}", auth=token).content == b"layer"
    r, _ = push_blob(client, "payments/api", b"other", auth=token)
    assert r.status_code == 403 and code(r) == "DENIED"
    r, _ = push_blob(client, "bob/own", b"other", auth=token)  # bob may, the token may not
    assert r.status_code == 403
    assert client.get("/v2/", auth=token).status_code == 200  # docker login
    assert client.get("/v2/", auth=("alice", made["secret"])).status_code == 401  # only with its owner's name
    listed = client.get("/api/v1/tokens", auth=BOB).json()["tokens"]
    assert [(t["name"], t["scopes"], t["repositories"]) for t in listed] == [("ci", ["pull"], ["payments/**"])]
    assert listed[0]["last_used"] and listed[0]["last_address"] == "testclient"
    assert made["secret"] not in str(listed)
    assert client.delete(f"/api/v1/tokens/{made['id']}", auth=BOB).status_code == 204
    r = client.get("/v2/", auth=token)
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    assert client.get("/api/v1/tokens", auth=BOB).json()["tokens"] == []


def test_bad_input_and_limits(client: TestClient) -> None:
    r = create(client, BOB, expires="2001-01-01T00:00:00Z")
    assert r.status_code == 400 and "in the past" in r.json()["errors"][0]["message"]
    r = create(client, BOB, scopes=["pull", "push", "delete"], repositories=["payments/**"])
    assert r.status_code == 403 and "cannot exceed your own rights" in r.json()["errors"][0]["message"]
    r = client.post("/api/v1/tokens", content=b"name=ci", auth=BOB)
    assert r.status_code == 400 and code(r) == "INVALID_REQUEST"
    r = client.post("/api/v1/tokens", content=b"[" * 70_000, headers={"Content-Type": "application/json"}, auth=BOB)
    assert r.status_code == 413
    assert create(client, ("bob", "wrong")).status_code == 401
    assert client.get("/api/v1/tokens").status_code == 401
    assert create(client, BOB, name="t0").status_code == 201
    r = create(client, BOB, name="t0")
    assert r.status_code == 409 and code(r) == "CONFLICT"
    for i in range(1, 3):
        assert create(client, BOB, name=f"t{i}").status_code == 201
    r = create(client, BOB, name="t3")
    assert r.status_code == 403 and "the most allowed" in r.json()["errors"][0]["message"]


def test_a_token_cannot_mint_tokens_nor_log_in_to_the_ui(client: TestClient) -> None:
    secret = create(client, BOB).json()["secret"]
    r = create(client, ("bob", secret), name="wider", scopes=["pull", "push"])
    assert r.status_code == 403 and "cannot manage access tokens" in r.text
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    r = client.post("/ui/login", data={"username": "bob", "password": secret, "csrf": csrf})
    assert r.status_code == 401 and "Access tokens work with docker" in r.text


def test_admin_sees_and_revokes_anyones(client: TestClient) -> None:
    made = create(client, BOB).json()
    assert client.get("/api/v1/tokens", params={"user": "bob"}, auth=BOB).status_code == 200  # their own
    r = client.get("/api/v1/tokens", params={"user": "alice"}, auth=BOB)
    assert r.status_code == 403
    assert [t["id"] for t in client.get("/api/v1/tokens", params={"user": "bob"}, auth=ALICE).json()["tokens"]] \
        == [made["id"]]
    assert client.delete(f"/api/v1/tokens/{made['id']}", auth=ALICE).status_code == 204


def test_no_secret_in_logs_metrics_or_the_audit_trail(client: TestClient, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = create(client, BOB, repositories=["payments/**"]).json()
    secret = made["secret"]
    client.get("/v2/", auth=("bob", secret))
    push_blob(client, "payments/api", b"x", auth=("bob", secret))  # refused: audited
    client.get("/v2/", auth=("bob", secret[:-2] + "xx"))  # a wrong one: audited
    client.delete(f"/api/v1/tokens/{made['id']}", auth=BOB)
    client.get("/v2/", auth=("bob", secret))
    client.portal.call(client.app.registry.tokens.uses.flush)  # the batched last uses, written now
    metrics = client.get("/metrics", auth=ALICE).text
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    audit = (tmp_path / "audit.jsonl").read_text()
    assert "refused" in audit
    recorded = [json.loads(line) for line in audit.splitlines()]
    actions = {(e["audit"], e.get("target")) for e in recorded}
    assert ("token.create", f"bob/{made['name']}") in actions and ("token.revoke", f"bob/{made['name']}") in actions
    assert ("token.use", made["id"]) in actions  # its first use, from an address it had not been used from
    for text in (logged, metrics, audit):
        assert secret not in text and secret[len("moorage_pat_"):] not in text


def test_the_token_server_narrows_tokens_and_binds_refresh_tokens(tmp_path: Path, signer: Signer,
                                                                   htpasswd_file: Path) -> None:
    (tmp_path / "token.key").write_bytes(signer.key_pem())
    (tmp_path / "token.crt").write_bytes(signer.pem())
    auth = {"token": {"realm": "http://registry.test/auth/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(tmp_path / "token.crt")},
            "tokenserver": {"key": str(tmp_path / "token.key"), "certificate": str(tmp_path / "token.crt"),
                            "htpasswd": str(htpasswd_file)}, "access": RULES}
    with make_client(tmp_path, auth) as client:
        made = create(client, BOB, repositories=["payments/**"]).json()
        params = [("service", SERVICE), ("scope", "repository:payments/api:pull,push"),
                  ("scope", "repository:bob/app:pull"), ("offline_token", "true")]
        r = client.get("/auth/token", params=params, auth=("bob", made["secret"]))
        assert r.status_code == 200, r.text
        access = jwt.decode(r.json()["token"], options={"verify_signature": False})["access"]
        assert access == [{"type": "repository", "name": "payments/api", "actions": ["pull"]}]
        form = {"grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"], "service": SERVICE,
                "scope": "repository:payments/api:pull,push"}
        r = client.post("/auth/token", data=form)
        access = jwt.decode(r.json()["access_token"], options={"verify_signature": False})["access"]
        assert access == [{"type": "repository", "name": "payments/api", "actions": ["pull"]}]  # still narrow
        client.delete(f"/api/v1/tokens/{made['id']}", auth=BOB)
        r = client.post("/auth/token", data=form)
        assert r.status_code == 401 and r.json()["error"] == "invalid_grant"


def test_expired_token_says_it_expired(client: TestClient) -> None:
    made = create(client, BOB, expires="2099-01-01T00:00:00Z").json()
    tokens = client.app.registry.tokens
    tokens.clock = lambda: datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    r = client.get("/v2/", auth=("bob", made["secret"]))
    assert r.status_code == 401 and "expired at 2099-01-01T00:00:00Z" in r.json()["errors"][0]["message"]


def test_robots_over_the_api(tmp_path: Path, htpasswd_file: Path) -> None:
    auth = {"htpasswd": {"path": str(htpasswd_file)}, "access": RULES}
    with make_client(tmp_path, auth) as client:
        add_namespace_owner(client, ("bob", "bob-pw"), "payments")
        r = client.post("/api/v1/namespaces/payments/robots", json={"name": "ci", "actions": ["pull", "push"]},
                        auth=BOB)
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "robot+payments+ci"
        r = client.post("/api/v1/robots/robot+payments+ci/tokens", json={"name": "pipeline", "scopes": ["pull", "push"]},
                        auth=BOB)
        assert r.status_code == 201, r.text
        robot = ("robot+payments+ci", r.json()["secret"])
        assert push_blob(client, "payments/api", b"from ci", auth=robot)[0].status_code == 201
        assert push_blob(client, "bob/app", b"from ci", auth=robot)[0].status_code == 403
        assert client.post("/api/v1/namespaces/payments/robots", json={"name": "x"}, auth=("carol", "x")).status_code == 401
        assert client.post("/api/v1/namespaces/payments/robots", json={"name": "ro"}, auth=ALICE).status_code == 201
        listed = client.get("/api/v1/namespaces/payments/robots", auth=BOB).json()["robots"]
        assert [(r["name"], r["actions"], r["created_by"]) for r in listed] == [
            ("robot+payments+ci", ["pull", "push"], "bob"), ("robot+payments+ro", ["pull"], "alice")]
        assert client.delete("/api/v1/robots/robot+payments+ci", auth=BOB).status_code == 204
        assert client.get("/v2/", auth=robot).status_code == 401


def ui_login(client: TestClient, user: str, password: str) -> str:
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    r = client.post("/ui/login", data={"username": user, "password": password, "csrf": token, "next": "/ui/"},
                    follow_redirects=False)
    assert r.status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/tokens").text)[1]


def test_ui_token_pages_create_show_once_list_revoke(client: TestClient) -> None:
    assert client.get("/ui/tokens", follow_redirects=False).status_code == 303  # log in first
    csrf = ui_login(client, *BOB)
    assert 'data-testid="tokens-link"' in client.get("/ui/").text
    r = client.post("/ui/tokens", data={"csrf": csrf, "name": "laptop", "scopes": "pull,push",
                                        "repositories": "payments/**", "expires": "2099-01-01"})
    assert r.status_code == 201, r.text
    secret = re.search(r'data-testid="secret">([^<]+)<', r.text)[1]
    assert secret.startswith("moorage_pat_")
    page = client.get("/ui/tokens").text
    assert "laptop" in page and "payments/**" in page and "2099-01-01T23:59:59Z" in page and secret not in page
    assert push_blob(client, "payments/api", b"from the ui's token", auth=("bob", secret))[0].status_code == 201
    r = client.post("/ui/tokens", data={"csrf": csrf, "name": "wide", "scopes": "pull,push,delete",
                                        "repositories": "payments/**"})
    assert r.status_code == 403 and "cannot exceed your own rights" in html_text(r.text)
    r = client.post("/ui/tokens", data={"csrf": "forged", "name": "x", "scopes": "pull"})
    assert r.status_code == 403
    token_id = client.get("/api/v1/tokens", auth=BOB).json()["tokens"][0]["id"]
    assert client.post(f"/ui/tokens/{token_id}/revoke", data={"csrf": "forged"}).status_code == 403
    r = client.post(f"/ui/tokens/{token_id}/revoke", data={"csrf": csrf})
    assert r.status_code == 200 and "Revoked laptop" in r.text
    assert client.get("/v2/", auth=("bob", secret)).status_code == 401


def html_text(page: str) -> str:
    return html.unescape(page)
