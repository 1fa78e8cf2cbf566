"""Every listing honours an access token's scope: a token scoped to ``payments/**`` sees only payments/ in
``/v2/_catalog``, ``/v1/search`` and ``/api/v1/usage``, with Basic auth and with the token server's Bearer
tokens alike, the file's rules alone or with the database's (``auth.database``), though its owner sees
more; a robot's token sees only its namespace (and pushes there); a token reaches none of the registry's
own resources but the catalog (not /metrics, even an admin's) and none of the management API."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from tests.auth.app_helpers import add_namespace_owner, push_image
from tests.auth.conftest import SERVICE, Signer, der_b64, token_auth_section
from tests.auth.test_tokens_api import make_client

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
RULES = {"admins": ["alice"], "rules": [
    {"repositories": ["payments/**"], "who": ["bob"], "actions": ["pull", "push"]},
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
    {"repositories": ["public/**"], "who": ["authenticated"], "actions": ["pull"]},
]}
SEEDED = ["alice/own", "bob/own", "payments/api", "payments/web", "public/base"]
MODES = ["basic", "token", "basic+database", "token+database"]


@pytest.fixture(params=MODES)
def client(request: pytest.FixtureRequest, tmp_path: Path, htpasswd_file: Path, signer: Signer
           ) -> Iterator[TestClient]:
    """The registry in Basic or token mode, with or without the database's users and policy; alice
    pushed every SEEDED repository; bob owns payments."""
    if request.param.startswith("basic"):
        auth: dict[str, Any] = {"htpasswd": {"path": str(htpasswd_file)}, "access": RULES}
    else:
        auth = token_auth_section(tmp_path, signer, htpasswd_file, RULES)
    if request.param.endswith("+database"):
        auth["database"] = {}
    with make_client(tmp_path, auth, http={"metrics": {"enabled": True}}) as c:
        for name in SEEDED:
            assert push_image(c, name, headers=credentials(c, ALICE, name, "pull,push")) == 201
        add_namespace_owner(c, ("bob", "bob-pw"), "payments")
        yield c


def token_mode(client: TestClient) -> bool:
    return client.app.registry.config.auth.token is not None


def credentials(client: TestClient, who: tuple[str, str], name: str, actions: str) -> dict[str, str]:
    """Headers that carry ``who``: Basic, or a Bearer token the token server gave them for ``name``."""
    if not token_mode(client):
        return {"Authorization": basic(who)}
    scope = f"repository:{name}:{actions}" if ":" not in name else name
    r = client.get("/auth/token", params={"service": SERVICE, "scope": scope}, auth=who)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def basic(who: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()


def catalog(client: TestClient, who: tuple[str, str]) -> list[str]:
    r = client.get("/v2/_catalog", headers=credentials(client, who, "registry:catalog:*", ""))
    assert r.status_code == 200, r.text
    return r.json()["repositories"]


def search(client: TestClient, who: tuple[str, str], term: str = "") -> list[str]:
    headers = credentials(client, who, "registry:catalog:*", "") if token_mode(client) else {"Authorization": basic(who)}
    r = client.get("/v1/search", params={"q": term, "n": 100}, headers=headers)
    assert r.status_code == 200, r.text
    return [hit["name"] for hit in r.json()["results"]]


def usage(client: TestClient, who: tuple[str, str]) -> list[str]:
    r = client.get("/api/v1/usage", headers=credentials(client, who, "registry:catalog:*", ""))
    assert r.status_code == 200, r.text
    return [repository["name"] for repository in r.json()["repositories"]]


def new_token(client: TestClient, who: tuple[str, str], path: str = "/api/v1/tokens", **body: Any) -> str:
    r = client.post(path, json={"name": "listing", "scopes": ["pull"], **body}, auth=who)
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def test_a_scoped_token_lists_only_its_scope(client: TestClient) -> None:
    owner_sees = ["bob/own", "payments/api", "payments/web", "public/base"]
    assert catalog(client, BOB) == owner_sees and search(client, BOB) == owner_sees and usage(client, BOB) == owner_sees
    token = ("bob", new_token(client, BOB, repositories=["payments/**"]))
    assert catalog(client, token) == ["payments/api", "payments/web"]
    assert search(client, token) == ["payments/api", "payments/web"]
    assert search(client, token, "own") == []
    assert usage(client, token) == ["payments/api", "payments/web"]
    narrow = ("bob", new_token(client, BOB, name="web", repositories=["payments/web"]))
    assert catalog(client, narrow) == search(client, narrow) == usage(client, narrow) == ["payments/web"]
    whole = ("bob", new_token(client, BOB, name="whole"))  # no globs: all the owner may pull
    assert catalog(client, whole) == search(client, whole) == usage(client, whole) == owner_sees


def test_a_robot_lists_only_its_namespace(client: TestClient) -> None:
    r = client.post("/api/v1/namespaces/payments/robots", json={"name": "ci", "actions": ["pull", "push"]},
                    auth=BOB)
    assert r.status_code == 201, r.text
    robot = ("robot+payments+ci", new_token(client, BOB, "/api/v1/robots/robot+payments+ci/tokens",
                                            scopes=["pull", "push"]))
    assert catalog(client, robot) == search(client, robot) == usage(client, robot) == ["payments/api", "payments/web"]
    assert push_image(client, "payments/web", headers=credentials(client, robot, "payments/web", "pull,push")) == 201


@pytest.mark.parametrize("client", ["basic+database", "token+database"], indirect=True)  # the API needs it
def test_a_token_manages_nothing(client: TestClient) -> None:
    token = ("alice", new_token(client, ALICE))
    for path in ("/api/v1/namespaces", "/api/v1/users", "/api/v1/teams", "/api/v1/account"):
        assert client.get(path, auth=ALICE).status_code == 200, path
        r = client.get(path, auth=token)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", (path, r.text)
    if token_mode(client):
        r = client.get("/api/v1/namespaces", headers=credentials(client, token, "registry:catalog:*", ""))
        assert r.status_code == 403, r.text


def test_an_admins_token_is_not_the_admin(client: TestClient) -> None:
    assert catalog(client, ALICE) == SEEDED
    token = ("alice", new_token(client, ALICE, repositories=["public/**"]))
    assert catalog(client, token) == search(client, token) == usage(client, token) == ["public/base"]
    assert client.get("/metrics", headers=credentials(client, ALICE, "registry:metrics:*", "")).status_code == 200
    if token_mode(client):  # the token server grants a token nothing of the registry's but the catalog
        r = client.get("/auth/token", params={"service": SERVICE, "scope": "registry:metrics:*"}, auth=token)
        assert jwt.decode(r.json()["token"], options={"verify_signature": False})["access"] == []
    else:
        r = client.get("/metrics", auth=token)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"


@pytest.mark.parametrize("client", ["token"], indirect=True)
def test_bearer_tokens_carry_the_scope_and_a_forged_one_is_refused(client: TestClient, signer: Signer) -> None:
    secret = new_token(client, BOB, repositories=["payments/**"])
    r = client.get("/auth/token", params={"service": SERVICE, "scope": "registry:catalog:*"}, auth=("bob", secret))
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["moorage_token"]["repositories"] == ["payments/**"] and claims["moorage_token"]["actions"] == ["pull"]
    assert secret not in str(claims)
    claims["moorage_token"] = {"actions": "pull"}  # signed by the right key, but not what the issuer writes
    forged = jwt.encode(claims, signer.key, algorithm="ES256", headers={"x5c": [der_b64(signer.cert)]})
    r = client.get("/v2/_catalog", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
