"""Auth through the whole registry app (``create_app``), as clients see it on the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from registry.config import ConfigError, parse
from registry.http.app import create_app
from tests.auth.app_helpers import app_client, push_blob, push_image
from tests.auth.conftest import API_RULES, SERVICE, Signer

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")


def error_code(response) -> str:
    return response.json()["errors"][0]["code"]


@pytest.fixture
def basic_client(tmp_path: Path, htpasswd_file: Path) -> Iterator[TestClient]:
    with app_client(tmp_path, {"htpasswd": {"realm": "moorage-test", "path": str(htpasswd_file)},
                               "access": API_RULES}) as client:
        yield client


class TestHtpasswd:
    def test_base_endpoint(self, basic_client: TestClient) -> None:
        r = basic_client.get("/v2/")
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
        assert r.headers["www-authenticate"] == 'Basic realm="moorage-test"'
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert basic_client.get("/v2/", auth=ALICE).status_code == 200
        assert basic_client.get("/v2/", auth=("alice", "nope")).status_code == 401

    def test_push_own_namespace_pull_public_anonymously(self, basic_client: TestClient) -> None:
        r, digest = push_blob(basic_client, "alice/app", b"hello", auth=ALICE)
        assert r.status_code == 201, r.text
        assert basic_client.get(f"/v2/alice/app/blobs/{digest}").status_code == 401
        assert basic_client.get(f"/v2/alice/app/blobs/{digest}", auth=BOB).status_code == 403
        assert basic_client.get(f"/v2/alice/app/blobs/{digest}", auth=ALICE).content == b"hello"
        r, digest = push_blob(basic_client, "public/base", b"public", auth=ALICE)  # admin
        assert r.status_code == 201
        assert basic_client.get(f"/v2/public/base/blobs/{digest}").content == b"public"

    def test_denied_push_is_403_with_the_spec_body(self, basic_client: TestClient) -> None:
        r, _ = push_blob(basic_client, "alice/app", b"x", auth=BOB)
        assert r.status_code == 403 and error_code(r) == "DENIED"
        assert "www-authenticate" not in r.headers
        r, _ = push_blob(basic_client, "public/base", b"x")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")

    def test_large_refused_body_is_drained(self, basic_client: TestClient) -> None:
        start = basic_client.post("/v2/bob/app/blobs/uploads/", auth=BOB)
        assert start.status_code == 202
        body = b"x" * (8 * 1024 * 1024)
        r = basic_client.patch(start.headers["location"], content=body)
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"

    def test_mount_from_a_repository_the_caller_cannot_pull(self, basic_client: TestClient) -> None:
        _, digest = push_blob(basic_client, "alice/private", b"secret", auth=ALICE)
        r = basic_client.post(f"/v2/bob/app/blobs/uploads/?mount={digest}&from=alice/private", auth=BOB)
        assert r.status_code == 403
        assert basic_client.head(f"/v2/bob/app/blobs/{digest}", auth=BOB).status_code == 404

    def test_mount_without_from_needs_read_access_to_everything(self, basic_client: TestClient) -> None:
        """Knowing a digest is no licence to link someone else's private layer into your repository."""
        _, digest = push_blob(basic_client, "alice/private", b"secret", auth=ALICE)
        r = basic_client.post(f"/v2/bob/app/blobs/uploads/?mount={digest}", auth=BOB)
        assert r.status_code == 202 and "location" in r.headers  # a normal upload instead
        assert basic_client.head(f"/v2/bob/app/blobs/{digest}", auth=BOB).status_code == 404
        r = basic_client.post(f"/v2/alice/other/blobs/uploads/?mount={digest}", auth=ALICE)  # admin
        assert r.status_code == 201
        assert basic_client.get(f"/v2/alice/other/blobs/{digest}", auth=ALICE).content == b"secret"

    @pytest.mark.parametrize(
        "path", ["/v2/bob/../alice/private/tags/list", "/v2/bob/%2e%2e/alice/private/tags/list",
                 "/v2/bob//app/tags/list", "/v2/Bob/app/tags/list"],
    )
    def test_name_tricks_do_not_reach_other_namespaces(self, basic_client: TestClient, path: str) -> None:
        push_blob(basic_client, "alice/private", b"secret", auth=ALICE)
        r = basic_client.get(path, auth=BOB)
        assert r.status_code in (400, 401, 403, 404)
        assert "secret" not in r.text and "tags" not in r.json()

    def test_catalog_lists_what_the_caller_may_pull(self, basic_client: TestClient) -> None:
        for name in ("alice/app", "bob/app", "public/base"):
            assert push_image(basic_client, name, auth=ALICE) == 201
        listing = basic_client.get("/v2/_catalog", auth=BOB)
        assert listing.json()["repositories"] == ["bob/app", "public/base"]
        assert basic_client.get("/v2/_catalog", auth=ALICE).json()["repositories"] == [
            "alice/app", "bob/app", "public/base"]
        assert basic_client.get("/v2/_catalog").status_code == 401


@pytest.fixture
def token_client(tmp_path: Path, token_auth: dict[str, Any]) -> Iterator[TestClient]:
    with app_client(tmp_path, token_auth) as client:
        yield client


def token_for(client: TestClient, *scopes: str, auth: tuple[str, str] | None = ALICE) -> dict[str, str]:
    params = [("service", SERVICE), *[("scope", s) for s in scopes]]
    r = client.get("/auth/token", params=params, auth=auth)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


class TestToken:
    def test_challenge_names_realm_service_and_scope(self, token_client: TestClient) -> None:
        r = token_client.get("/v2/")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="http://registry.test/auth/token",service="{SERVICE}"')
        r = token_client.get("/v2/alice/app/tags/list")
        assert r.headers["www-authenticate"].endswith(f'service="{SERVICE}",scope="repository:alice/app:pull"')
        assert r.json()["errors"][0]["detail"] == [{"Type": "repository", "Name": "alice/app", "Action": "pull"}]
        r, _ = push_blob(token_client, "alice/app", b"x")
        assert 'scope="repository:alice/app:pull,push"' in r.headers["www-authenticate"]

    @pytest.mark.parametrize(("headers", "realm"), [
        ({}, "http://registry.test/auth/token"),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "reg.example:443"}, "https://reg.example:443/auth/token"),
    ])
    def test_autoredirect_realm_follows_the_request(self, tmp_path: Path, token_auth: dict[str, Any],
                                                    headers: dict[str, str], realm: str) -> None:
        token_auth["token"].update(realm="https://unused.invalid/token", autoredirect=True)
        raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "auth": token_auth,
               "http": {"trustedproxies": ["10.0.0.0/8"]}}
        with TestClient(create_app(parse(raw)), base_url="http://registry.test", client=("10.1.2.3", 4000)) as client:
            r = client.get("/v2/", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith(f'Bearer realm="{realm}"'), r.headers

    def test_autoredirect_alone_needs_no_realm(self, tmp_path: Path, token_auth: dict[str, Any]) -> None:
        del token_auth["token"]["realm"]
        token_auth["token"]["autoredirect"] = True
        with app_client(tmp_path, token_auth) as client:
            r = client.get("/v2/alice/app/tags/list")
            assert r.status_code == 401
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="http://registry.test/auth/token"'), challenge
            token = client.get("/auth/token", params={"service": SERVICE, "scope": "repository:alice/app:pull"},
                               auth=ALICE).json()["token"]
            assert client.get("/v2/alice/app/tags/list", headers={"Authorization": f"Bearer {token}"}).status_code \
                == 404  # authorized: the repository does not exist
        token_auth["token"]["autoredirect"] = False
        with pytest.raises(ConfigError, match="auth.token.realm: expected a non-empty string"):
            app_client(tmp_path, token_auth)

    def test_docker_like_flow(self, token_client: TestClient) -> None:
        assert token_client.get("/v2/", headers=token_for(token_client)).status_code == 200
        headers = token_for(token_client, "repository:alice/app:pull,push")
        r, digest = push_blob(token_client, "alice/app", b"layer", headers=headers)
        assert r.status_code == 201, r.text
        assert token_client.get(f"/v2/alice/app/blobs/{digest}", headers=headers).content == b"layer"

    def test_token_for_one_repository_is_refused_on_another(self, token_client: TestClient) -> None:
        headers = token_for(token_client, "repository:alice/app:pull,push")
        r, _ = push_blob(token_client, "alice/other", b"x", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].endswith('error="insufficient_scope"')

    def test_partial_grant_then_insufficient_scope(self, token_client: TestClient) -> None:
        headers = token_for(token_client, "repository:public/base:pull,push", auth=BOB)
        r, _ = push_blob(token_client, "public/base", b"x", headers=headers)
        assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]

    def test_tampered_and_foreign_tokens_are_invalid(self, token_client: TestClient) -> None:
        headers = token_for(token_client, "repository:alice/app:pull")
        token = headers["Authorization"].split()[1]
        payload = jwt.decode(token, options={"verify_signature": False})
        payload["access"][0]["name"] = "bob/app"
        forged = jwt.encode(payload, Signer().key, algorithm="ES256", headers=jwt.get_unverified_header(token))
        r = token_client.get("/v2/bob/app/tags/list", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and r.headers["www-authenticate"].endswith('error="invalid_token"')

    def test_anonymous_token_pulls_public(self, token_client: TestClient) -> None:
        admin = token_for(token_client, "repository:public/base:pull,push")
        r, digest = push_blob(token_client, "public/base", b"pub", headers=admin)
        assert r.status_code == 201
        anonymous = token_for(token_client, "repository:public/base:pull", auth=None)
        assert token_client.get(f"/v2/public/base/blobs/{digest}", headers=anonymous).content == b"pub"

    def test_catalog(self, token_client: TestClient) -> None:
        for name in ("alice/app", "bob/app"):
            headers = token_for(token_client, f"repository:{name}:pull,push")
            assert push_image(token_client, name, headers=headers) == 201
        bob = token_for(token_client, "registry:catalog:*", auth=BOB)
        assert token_client.get("/v2/_catalog", headers=bob).json()["repositories"] == ["bob/app"]
        alice = token_for(token_client, "registry:catalog:*")
        assert token_client.get("/v2/_catalog", headers=alice).json()["repositories"] == ["alice/app", "bob/app"]
        no_scope = token_for(token_client)
        assert token_client.get("/v2/_catalog", headers=no_scope).status_code == 401

    def test_token_server_post_and_errors_through_the_app(self, token_client: TestClient) -> None:
        form = {"grant_type": "password", "username": "bob", "password": "bob-pw", "service": SERVICE,
                "scope": "repository:bob/app:pull", "access_type": "offline", "client_id": "test"}
        r = token_client.post("/auth/token", data=form)
        assert r.status_code == 200 and json.loads(r.text)["refresh_token"]
        assert token_client.get("/auth/token", auth=("bob", "x")).status_code == 401


def test_bad_auth_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises((ConfigError, ValueError), match="auth.htpasswd.path"):
        app_client(tmp_path, {"htpasswd": {"path": str(tmp_path / "missing")}})
