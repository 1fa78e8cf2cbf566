"""The built-in token server over HTTP, and its tokens checked by the Bearer controller."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from auth import htpasswd
from auth.base import Access, AuthFailure
from auth.factory import build_access_controller, token_server_routes
from auth.verifier import TokenError
from tests.auth.conftest import ISSUER, SERVICE, Signer, token_auth_section

RULES = {
    "groups": {"ci": ["bob"]},
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["ci/**"], "who": ["group:ci"], "actions": ["pull", "push"]},
        {"repositories": ["public/**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ],
}


@pytest.fixture
def auth_config(tmp_path: Path, signer: Signer, htpasswd_file: Path) -> dict[str, Any]:
    return token_auth_section(tmp_path, signer, htpasswd_file, RULES, "http://testserver/auth/token",
                              expiration="2m")


@pytest.fixture
def client(auth_config: dict[str, Any]) -> TestClient:
    return TestClient(Starlette(routes=token_server_routes(auth_config)))


def scopes(token: str) -> dict[tuple[str, str], list[str]]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return {(a["type"], a["name"]): a["actions"] for a in claims["access"]}


def get_token(client: TestClient, *scope: str, auth: tuple[str, str] | None = ("alice", "alice-pw"),
              **params: str):
    query = [("service", SERVICE), *[("scope", s) for s in scope], *params.items()]
    return client.get("/auth/token", params=query, auth=auth)


def test_get_grants_the_intersection(client: TestClient) -> None:
    r = get_token(client, "repository:alice/app:pull,push", "repository:ci/x:pull,push",
                  "repository:bob/x:pull", "repository:public/x:push,pull", account="alice", client_id="docker")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 120
    assert body["issued_at"].endswith("Z") and "refresh_token" not in body
    assert r.headers["cache-control"] == "no-store"
    assert scopes(body["token"]) == {("repository", "alice/app"): ["pull", "push"],
                                     ("repository", "public/x"): ["pull"]}
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and len(header["x5c"]) == 1
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, SERVICE, "alice")
    assert claims["exp"] - claims["iat"] == 120 and claims["nbf"] <= time.time()


def test_group_members_get_group_rules(client: TestClient) -> None:
    r = get_token(client, "repository:ci/x:pull,push,delete", auth=("bob", "bob-pw"))
    assert scopes(r.json()["token"]) == {("repository", "ci/x"): ["pull", "push"]}


def test_space_separated_scopes_in_one_parameter(client: TestClient) -> None:
    r = get_token(client, "repository:alice/a:pull repository:alice/b:push")
    assert set(scopes(r.json()["token"])) == {("repository", "alice/a"), ("repository", "alice/b")}


def test_anonymous_gets_only_anonymous_rules(client: TestClient) -> None:
    r = get_token(client, "repository:public/x:pull,push", "repository:alice/x:pull", auth=None,
                  offline_token="true")
    assert r.status_code == 200
    assert scopes(r.json()["token"]) == {("repository", "public/x"): ["pull"]}
    assert "refresh_token" not in r.json()
    assert jwt.decode(r.json()["token"], options={"verify_signature": False})["sub"] == ""


def test_empty_basic_credentials_are_anonymous(client: TestClient) -> None:
    r = client.get("/auth/token", params={"scope": "repository:public/x:pull"},
                   headers={"Authorization": "Basic Og=="})
    assert r.status_code == 200 and scopes(r.json()["token"]) == {("repository", "public/x"): ["pull"]}
    r = client.get("/auth/token", params={"scope": "repository:public/x:pull"}, headers={"Authorization": "Basic"})
    assert r.status_code == 401


def test_login_without_scope_gets_an_empty_grant(client: TestClient) -> None:
    r = get_token(client)
    assert r.status_code == 200 and scopes(r.json()["token"]) == {}


@pytest.mark.parametrize(
    "scope",
    ["repository:alice/../bob/x:pull", "repository:alice/%2e%2e/x:pull", "repository:alice//x:pull",
     "repository:Alice/x:pull", "repository:alice/x", "bogus", "registry:other:*",
     "repository(plugin):alice/x:pull", "repository:alice/x:fly"],
)
def test_scopes_that_are_malformed_or_not_allowed_grant_nothing(client: TestClient, scope: str) -> None:
    r = get_token(client, scope)
    assert r.status_code == 200 and scopes(r.json()["token"]) == {}


def test_admins_get_the_catalog(auth_config: dict[str, Any]) -> None:
    auth_config["access"] = {**RULES, "admins": ["alice"], "catalog": []}
    client = TestClient(Starlette(routes=token_server_routes(auth_config)))
    assert scopes(get_token(client, "registry:catalog:*").json()["token"]) == {("registry", "catalog"): ["*"]}
    bob = get_token(client, "registry:catalog:*", auth=("bob", "bob-pw"))
    assert scopes(bob.json()["token"]) == {}


@pytest.mark.parametrize("auth", [("alice", "wrong"), ("nobody", "alice-pw")])
def test_wrong_credentials_are_401(client: TestClient, auth: tuple[str, str]) -> None:
    r = get_token(client, "repository:public/x:pull", auth=auth)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Basic realm="{SERVICE}"'
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert "token" not in r.json()


def test_account_must_match_and_service_must_be_ours(client: TestClient) -> None:
    assert get_token(client, account="bob").status_code == 401
    r = client.get("/auth/token", params={"service": "other"}, auth=("alice", "alice-pw"))
    assert r.status_code == 400


def test_offline_token_gives_a_refresh_token_usable_with_post(client: TestClient) -> None:
    login = get_token(client, offline_token="true", client_id="docker").json()
    refresh = login["refresh_token"]
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                         "service": SERVICE, "scope": "repository:alice/x:push",
                                         "client_id": "docker"})
    assert r.status_code == 200, r.text
    assert scopes(r.json()["access_token"]) == {("repository", "alice/x"): ["push"]}
    form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "repository:alice/a:pull"),
            ("scope", "repository:alice/b:pull repository:bob/c:pull")]
    r = client.post("/auth/token", content=urlencode(form),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert set(scopes(r.json()["token"])) == {("repository", "alice/a"), ("repository", "alice/b")}


def test_password_grant(client: TestClient) -> None:
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw", "service": SERVICE,
            "scope": "repository:alice/x:pull", "client_id": "t", "access_type": "offline"}
    r = client.post("/auth/token", data=form)
    assert r.status_code == 200 and r.json()["refresh_token"]
    assert scopes(r.json()["token"]) == {("repository", "alice/x"): ["pull"]}
    r = client.post("/auth/token", data={**form, "password": "wrong"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant"
    assert client.post("/auth/token", data={**form, "username": ""}).status_code == 401


@pytest.mark.parametrize(
    ("form", "status"),
    [({"grant_type": "client_credentials"}, 400), ({}, 400),
     ({"grant_type": "refresh_token", "refresh_token": "junk"}, 401),
     ({"grant_type": "refresh_token"}, 401)],
)
def test_bad_post_requests(client: TestClient, form: dict[str, str], status: int) -> None:
    assert client.post("/auth/token", data=form).status_code == status


def test_post_must_be_a_small_form(client: TestClient) -> None:
    assert client.post("/auth/token", json={"grant_type": "password"}).status_code == 400
    big = {"grant_type": "password", "username": "alice", "password": "x" * 70000}
    assert client.post("/auth/token", data=big).status_code == 400


def test_refresh_token_is_revoked_by_a_password_change_or_removal(client, htpasswd_file: Path) -> None:
    refresh = get_token(client, offline_token="true").json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE}
    assert client.post("/auth/token", data=form).status_code == 200
    htpasswd.set_password(htpasswd_file, "alice", "new-pw", cost=4)
    r = client.post("/auth/token", data=form)
    assert r.status_code == 401 and r.json()["error_description"] == "refresh token revoked"
    refresh = get_token(client, offline_token="true", auth=("alice", "new-pw")).json()["refresh_token"]
    htpasswd.remove_user(htpasswd_file, "alice")
    r = client.post("/auth/token", data={**form, "refresh_token": refresh})
    assert r.status_code == 401


def test_tokens_work_at_the_registry_and_refresh_tokens_do_not(client, auth_config) -> None:
    controller = build_access_controller(auth_config)
    body = get_token(client, "repository:alice/app:pull,push", offline_token="true").json()
    wanted = [Access("repository", "alice/app", "push")]
    grant = asyncio.run(controller.authorize({"authorization": f"Bearer {body['token']}"}, wanted))
    assert grant.subject == "alice"
    with pytest.raises(AuthFailure) as info:
        asyncio.run(controller.authorize({"authorization": f"Bearer {body['refresh_token']}"}, []))
    assert 'error="invalid_token"' in info.value.challenge
    with pytest.raises(TokenError, match="(?i)audience"):
        controller.verifier.verify(body["refresh_token"])


def test_kid_header_when_no_certificate(auth_config: dict[str, Any], signer: Signer) -> None:
    del auth_config["tokenserver"]["certificate"]
    client = TestClient(Starlette(routes=token_server_routes(auth_config)))
    token = get_token(client, "repository:alice/x:pull").json()["token"]
    assert set(jwt.get_unverified_header(token)) == {"alg", "typ", "kid"}
    controller = build_access_controller(auth_config)
    assert controller.verifier.verify(token).subject == "alice"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_other_signing_algorithms(auth_config: dict[str, Any], tmp_path: Path, alg: str) -> None:
    other = Signer(alg)
    (tmp_path / "token.key").write_bytes(other.key_pem())
    (tmp_path / "token.crt").write_bytes(other.pem())
    client = TestClient(Starlette(routes=token_server_routes(auth_config)))
    token = get_token(client, "repository:alice/x:pull").json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert build_access_controller(auth_config).verifier.verify(token).subject == "alice"
