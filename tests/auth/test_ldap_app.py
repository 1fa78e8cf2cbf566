"""Directory users through the whole registry app: Basic on /v2, the token server and the web UI share one
credential chain; a directory that is down answers 503 UNAVAILABLE, never a 401."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.auth.app_helpers import app_client, push_blob
from tests.auth.conftest import ISSUER, SERVICE, Signer
from tests.auth.test_tokenserver import scopes
from tests.ldapserver import PEOPLE, SERVICE_DN, SERVICE_PW, Slapd, own_slapd
from tests.ui.conftest import csrf

RULES = {"rules": [
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
]}


@pytest.fixture
def directory() -> Iterator[Slapd]:
    """Its own slapd: these tests stop it."""
    yield from own_slapd()


def ldap_section(slapd: Slapd) -> dict[str, Any]:
    return {"url": slapd.url, "starttls": True, "cacertificate": slapd.ca_file, "binddn": SERVICE_DN,
            "bindpassword": SERVICE_PW, "userbase": PEOPLE, "cachettl": 0, "timeout": "2s"}


@pytest.fixture
def basic(tmp_path: Path, htpasswd_file: Path, directory: Slapd) -> Iterator[TestClient]:
    auth = {"htpasswd": {"realm": "moorage-test", "path": str(htpasswd_file)}, "ldap": ldap_section(directory),
            "access": RULES}
    with app_client(tmp_path, auth) as client:
        yield client


def test_directory_and_local_users_on_v2_and_the_directory_down(basic: TestClient, directory: Slapd) -> None:
    assert basic.get("/v2/", auth=("carol", "carol-secret")).status_code == 200
    r, _ = push_blob(basic, "carol/app", b"from the directory", auth=("carol", "carol-secret"))
    assert r.status_code == 201
    assert basic.get("/v2/", auth=("carol", "wrong")).status_code == 401
    directory.stop()
    assert basic.get("/v2/", auth=("alice", "alice-pw")).status_code == 200  # htpasswd: unaffected
    r = basic.get("/v2/", auth=("carol", "carol-secret"))
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert int(r.headers["retry-after"]) >= 1 and "www-authenticate" not in r.headers
    page = basic.get("/ui/login")
    r = basic.post("/ui/login", data={"username": "carol", "password": "carol-secret", "csrf": csrf(page.text)})
    assert r.status_code == 503 and "unavailable" in r.text
    directory.start()
    assert basic.get("/v2/", auth=("carol", "carol-secret")).status_code == 200


def test_directory_alone_is_basic_auth(tmp_path: Path, directory: Slapd) -> None:
    with app_client(tmp_path, {"ldap": ldap_section(directory), "access": RULES}) as client:
        r = client.get("/v2/")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="moorage"'
        assert client.get("/v2/", auth=("carol", "carol-secret")).status_code == 200
        page = client.get("/ui/login")
        r = client.post("/ui/login", data={"username": "Carol", "password": "carol-secret", "csrf": csrf(page.text),
                                           "next": "/ui/"}, follow_redirects=False)
        assert r.status_code == 303
        assert "carol" in client.get("/ui/").text  # logged in under the directory's name


def test_token_server_issues_to_directory_users_and_refresh_rechecks_them(
        tmp_path: Path, signer: Signer, directory: Slapd) -> None:
    (tmp_path / "token.key").write_bytes(signer.key_pem())
    (tmp_path / "token.crt").write_bytes(signer.pem())
    auth = {"token": {"realm": "http://registry.test/auth/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(tmp_path / "token.crt")},
            "tokenserver": {"key": str(tmp_path / "token.key"), "certificate": str(tmp_path / "token.crt")},
            "ldap": ldap_section(directory), "access": RULES}
    with app_client(tmp_path, auth) as client:
        params = {"service": SERVICE, "scope": "repository:carol/app:push,pull", "offline_token": "true"}
        r = client.get("/auth/token", params=params, auth=("carol", "carol-secret"))
        assert r.status_code == 200, r.text
        assert scopes(r.json()["token"]) == {("repository", "carol/app"): ["push", "pull"]}
        refresh = r.json()["refresh_token"]
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
                "scope": "repository:carol/app:pull"}
        assert client.post("/auth/token", data=form).status_code == 200
        assert client.get("/auth/token", params=params, auth=("carol", "nope")).status_code == 401
        directory.stop()
        r = client.get("/auth/token", params=params, auth=("carol", "carol-secret"))
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert client.post("/auth/token", data=form).status_code == 503
        directory.start()
        with directory.admin() as admin:
            assert admin.delete("uid=carol," + PEOPLE)
        r = client.post("/auth/token", data=form)
        assert r.status_code == 401 and r.json()["error"] == "invalid_grant"  # removed from the directory


def test_directory_groups_are_teams_that_rules_name(tmp_path: Path, directory: Slapd) -> None:
    rules = {"rules": [{"repositories": ["payments/**"], "who": ["team:payments-devs"], "actions": ["pull", "push"]},
                       *RULES["rules"]]}
    with app_client(tmp_path, {"ldap": ldap_section(directory), "access": rules}) as client:
        alice, carol = ("alice", "alice-secret"), ("carol", "carol-secret")
        assert push_blob(client, "payments/api", b"layer", auth=alice)[0].status_code == 201
        r, _ = push_blob(client, "payments/api", b"layer", auth=carol)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        directory.set_member("payments-devs", "carol", True)
        assert push_blob(client, "payments/api", b"layer 2", auth=carol)[0].status_code == 201  # cachettl 0
        directory.set_member("payments-devs", "alice", False)
        assert push_blob(client, "payments/api", b"layer 3", auth=alice)[0].status_code == 403


def test_team_entries_in_rules_are_checked() -> None:
    from auth.settings import AuthSettings
    from configkit import ConfigError

    with pytest.raises(ConfigError, match=r"auth.access.rules\[0\].who: 'team:Payments Devs': not a team name"):
        AuthSettings.parse({"access": {"rules": [{"repositories": ["**"], "who": ["team:Payments Devs"],
                                                  "actions": ["pull"]}]}})


def test_a_directory_users_token_carries_their_teams_to_a_replica_that_never_saw_them(
        tmp_path: Path, directory: Slapd) -> None:
    """The teams of a directory user's login are recorded in the database: their access token, used first
    on another replica (or worker) that never saw their password, is held to the same group grant."""
    rules = {"rules": [{"repositories": ["payments/**"], "who": ["team:payments-devs"], "actions": ["pull", "push"]},
                       *RULES["rules"]]}
    auth = {"ldap": ldap_section(directory), "access": rules}
    with app_client(tmp_path, auth) as first, app_client(tmp_path, auth) as second:
        alice = ("alice", "alice-secret")
        assert push_blob(first, "payments/api", b"by password", auth=alice)[0].status_code == 201
        made = first.post("/api/v1/tokens", auth=alice,
                          json={"name": "ci", "scopes": ["pull", "push"], "repositories": ["payments/**"]})
        assert made.status_code == 201, made.text
        token = ("alice", made.json()["secret"])
        r, _ = push_blob(second, "payments/api", b"by token, elsewhere", auth=token)
        assert r.status_code == 201, r.text
        r, _ = push_blob(second, "carol/app", b"outside the token's repositories", auth=token)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
