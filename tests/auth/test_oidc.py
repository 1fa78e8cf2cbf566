"""Single sign-on to the web UI through a real OpenID provider (tests/oidcprovider.py, on Authlib's server
side), the registry driven through its ASGI app and the provider over HTTP, as a browser would."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from auth.settings import AuthSettings
from configkit import ConfigError
from tests.auth.app_helpers import app_client
from tests.oidcprovider import Client, Provider, User

CALLBACK = "http://registry.test/ui/oidc/callback"
SECRET = "registry-web-secret"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    users = [User("dora", "dora-pw", "dora@example.org", ["payments-devs", "Developers", "not a team!"]),
             User("alice", "alice-sso-pw", groups=[])]
    with Provider(users, [Client("moorage", SECRET, [CALLBACK])]).running() as op:
        yield op


@pytest.fixture(autouse=True)
def behaving(provider: Provider) -> Iterator[None]:
    provider.mischief = None
    yield
    provider.mischief = None


def oidc_section(provider: Provider, **overrides: Any) -> dict[str, Any]:
    return {"issuer": provider.issuer, "clientid": "moorage", "clientsecret": SECRET, "label": "Example SSO",
            **overrides}


@pytest.fixture
def client(tmp_path: Path, htpasswd_file: Path, provider: Provider) -> Iterator[TestClient]:
    auth = {"htpasswd": {"path": str(htpasswd_file)}, "oidc": oidc_section(provider),
            "access": {"rules": [{"repositories": ["payments/**"], "who": ["team:payments-devs"],
                                  "actions": ["pull", "push"]}]}}
    with app_client(tmp_path, auth) as c:
        yield c


def provider_login(authorize_url: str, user: str, password: str) -> str:
    """The provider's login form filled in; returns where the provider sends the browser."""
    with httpx.Client() as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        action = html.unescape(re.search(r'<form[^>]*action="([^"]*)"', page.text)[1])
        answer = browser.post(urljoin(authorize_url, action),
                              data={"username": user, "password": password, "action": "login"})
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


def start(client: TestClient, target: str = "/ui/") -> str:
    r = client.get("/ui/oidc/login", params={"next": target}, follow_redirects=False)
    assert r.status_code == 302, r.text
    assert "moorage_oidc" in r.cookies or "moorage_oidc" in r.headers.get("set-cookie", "")
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["redirect_uri"] == [CALLBACK]
    return r.headers["location"]


def callback(client: TestClient, location: str) -> httpx.Response:
    assert location.startswith(CALLBACK), location
    return client.get(location[len("http://registry.test"):], follow_redirects=False)


def test_login_page_offers_sso_and_the_flow_logs_in_with_teams(client: TestClient) -> None:
    assert "Log in with Example SSO" in client.get("/ui/login").text
    r = callback(client, provider_login(start(client, "/ui/usage"), "dora", "dora-pw"))
    assert r.status_code == 200, r.text
    assert 'http-equiv="refresh" content="0;url=/ui/usage"' in r.text
    assert 'data-testid="user">dora<' in client.get("/ui/").text
    teams = client.app.registry.login.credentials.memberships.teams("dora")
    assert teams == frozenset({"payments-devs", "developers"})
    assert "push" in client.app.registry.login.actions("dora", "payments/api")


def test_replayed_and_mismatched_answers_are_refused(client: TestClient) -> None:
    location = provider_login(start(client), "dora", "dora-pw")
    forged = re.sub(r"state=[^&]+", "state=forged", location)
    r = callback(client, forged)
    assert r.status_code == 401 and "state mismatch" in r.text
    first = start(client)
    location = provider_login(first, "dora", "dora-pw")
    cookie = client.cookies.get("moorage_oidc")
    assert callback(client, location).status_code == 200
    client.cookies.set("moorage_oidc", cookie, path="/ui/oidc")  # the same answer and cookie again
    r = callback(client, location)
    assert r.status_code == 401 and "already used" in r.text
    client.cookies.delete("moorage_oidc", path="/ui/oidc")
    r = callback(client, location)
    assert r.status_code == 401 and "No login is in progress" in r.text


@pytest.mark.parametrize(("mischief", "message"), [
    ("tamper", "signature does not verify"),
    ("nonce", "nonce mismatch"),
    ("expired", "has expired"),
    ("issuer", "another issuer"),
    ("audience", "another application"),
    ("none", "algorithm"),
    ("hs256", "algorithm"),
])
def test_bad_id_tokens_are_refused_with_a_clear_page(client: TestClient, provider: Provider, mischief: str,
                                                     message: str) -> None:
    location = provider_login(start(client), "dora", "dora-pw")
    provider.mischief = mischief
    r = callback(client, location)
    assert r.status_code == 401 and "Single sign-on failed" in r.text
    assert message in html.unescape(r.text), r.text
    assert 'data-testid="user"' not in client.get("/ui/").text


def test_provider_refusal_and_cancel(client: TestClient) -> None:
    location = start(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    r = callback(client, f"{CALLBACK}?error=access_denied&error_description=The+user+cancelled&state={state}")
    assert r.status_code == 401 and "The user cancelled" in r.text


def test_a_local_name_is_not_taken_over(client: TestClient) -> None:
    r = callback(client, provider_login(start(client), "alice", "alice-sso-pw"))
    assert r.status_code == 401 and "belongs to an account" in html.unescape(r.text)


def test_wrong_client_secret_is_refused(tmp_path: Path, htpasswd_file: Path, provider: Provider) -> None:
    auth = {"htpasswd": {"path": str(htpasswd_file)}, "oidc": oidc_section(provider, clientsecret="wrong")}
    with app_client(tmp_path, auth) as client:
        r = callback(client, provider_login(start(client), "dora", "dora-pw"))
        assert r.status_code == 401 and "refused the login" in r.text


def test_provider_down_is_a_prompt_503_page(tmp_path: Path, htpasswd_file: Path) -> None:
    op = Provider([User("dora", "dora-pw")], [Client("moorage", SECRET, [CALLBACK])])
    with op.running():
        auth = {"htpasswd": {"path": str(htpasswd_file)}, "oidc": oidc_section(op, timeout="2s")}
        with app_client(tmp_path, auth) as client:
            location = provider_login(start(client), "dora", "dora-pw")
            op.stop()
            r = callback(client, location)
            assert r.status_code == 503 and "cannot be reached" in r.text
    with app_client(tmp_path, auth) as client:  # nothing cached: the login cannot even start
        started = time.monotonic()
        r = client.get("/ui/oidc/login", follow_redirects=False)
        assert r.status_code == 503 and "Single sign-on unavailable" in r.text
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(("section", "key"), [
    ({"clientid": "a", "clientsecret": "b"}, "auth.oidc.issuer"),
    ({"issuer": "ftp://x", "clientid": "a", "clientsecret": "b"}, "auth.oidc.issuer"),
    ({"issuer": "https://x", "clientid": "a"}, "auth.oidc.clientsecret"),
    ({"issuer": "https://x", "clientid": "a", "clientsecret": "b", "scopes": ["profile"]}, "auth.oidc.scopes"),
    ({"issuer": "https://x", "clientid": "a", "clientsecret": "b", "algorithms": ["HS256"]}, "auth.oidc.algorithms"),
    ({"issuer": "https://x", "clientid": "a", "clientsecret": "b", "groups": {"mapping": {"g": "Bad"}}},
     "auth.oidc.groups.mapping.g"),
    ({"issuer": "https://x", "clientid": "a", "clientsecret": "b", "client_id": "a"}, "auth.oidc.client_id"),
])
def test_config_errors_name_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuthSettings.parse({"oidc": section})
    assert str(info.value).startswith(f"{key}: "), str(info.value)


def test_first_sign_on_with_the_database_makes_the_personal_namespace(tmp_path: Path, provider: Provider) -> None:
    """A user a single sign-on creates owns their personal namespace, as one an admin creates: its page
    and their account list it (issue 19: every user has one)."""
    with app_client(tmp_path, {"database": {}, "oidc": oidc_section(provider)}) as client:
        r = callback(client, provider_login(start(client), "dora", "dora-pw"))
        assert r.status_code == 200, r.text
        page = client.get("/ui/namespaces/dora")
        assert page.status_code == 200 and "the personal namespace of <strong>dora</strong>" in page.text
        assert 'data-namespace="dora"' in client.get("/ui/account").text
        changes = client.get("/ui/changes").text
        assert "namespace.create" in changes and "user.create" not in changes  # her namespace's, not the user's
