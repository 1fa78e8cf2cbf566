"""The web UI and /v1/search with auth: the same users, the same rights as on /v2."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import make_client
from tests.auth.conftest import SERVICE, Signer, bcrypt_line, token_auth_section
from tests.ui.conftest import PASSWORDS, RULES, basic_auth, csrf, login, push_image, write_htpasswd


def basic(user: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def names(html: str) -> list[str]:
    return re.findall(r'class="repo" href="/ui/r/([^"]+)"', html)


OWNERS = {"alice/app": "alice", "bob/tool": "bob", "public/base": "alice"}
ACCESS = {"rules": [{"repositories": ["public/**"], "who": ["alice"], "actions": ["*"]}, *RULES["rules"]]}


def seed(client: TestClient) -> None:
    for name, user in OWNERS.items():
        client.headers.update(basic(user))
        push_image(client, name, "1.0")
    client.headers.pop("Authorization")


@pytest.fixture
def basic_client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "root", auth={**basic_auth(tmp_path), "access": ACCESS}) as c:
        seed(c)
        yield c


def token_config(tmp_path: Path) -> dict[str, Any]:
    return token_auth_section(tmp_path, Signer(), write_htpasswd(tmp_path), ACCESS)


def bearer(client: TestClient, user: str | None, *scopes: str) -> dict[str, str]:
    params = [("service", SERVICE), *(("scope", s) for s in scopes)]
    r = client.get("/auth/token", params=params, headers=basic(user) if user else {})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def seed_with_tokens(client: TestClient) -> None:
    for name, user in OWNERS.items():
        client.headers.update(bearer(client, user, f"repository:{name}:pull,push"))
        push_image(client, name, "1.0")
    client.headers.pop("Authorization")


def test_anonymous_sees_what_anonymous_may_pull(basic_client: TestClient) -> None:
    assert names(basic_client.get("/ui/").text) == ["public/base"]
    assert basic_client.get("/ui/r/alice/app").status_code == 404
    assert basic_client.get("/ui/r/alice/app:1.0").status_code == 404
    assert basic_client.get("/ui/r/public/base:1.0").status_code == 200
    assert "/ui/delete/" not in basic_client.get("/ui/r/public/base").text
    assert "Log in" in basic_client.get("/ui/").text


def test_login_shows_own_repositories_and_delete_where_allowed(basic_client: TestClient) -> None:
    r = login(basic_client, "bob")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    page = basic_client.get("/ui/").text
    assert names(page) == ["bob/tool", "public/base"] and 'data-testid="user">bob<' in page
    assert "/ui/delete/bob/tool:1.0" in basic_client.get("/ui/r/bob/tool").text
    assert "/ui/delete/" not in basic_client.get("/ui/r/public/base").text  # bob may only pull it
    token = csrf(basic_client.get("/ui/").text)
    assert basic_client.post("/ui/delete/public/base:1.0", data={"csrf": token}).status_code == 403
    assert basic_client.post("/ui/delete/alice/app:1.0", data={"csrf": token}).status_code == 404
    assert basic_client.get("/v2/public/base/tags/list").json()["tags"] == ["1.0"]
    r = basic_client.post("/ui/delete/bob/tool:1.0", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert basic_client.get("/v2/bob/tool/tags/list", headers=basic("bob")).json()["tags"] == []


def test_login_errors_logout_and_csrf(basic_client: TestClient) -> None:
    r = login(basic_client, "bob", "wrong")
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert login(basic_client, "nobody", "x").status_code == 401
    r = basic_client.post("/ui/login", data={"username": "bob", "password": "bob-pw", "csrf": "forged"})
    assert r.status_code == 403
    r = basic_client.post("/ui/login", data={"username": "bob", "password": "bob-pw",
                                             "csrf": csrf(basic_client.get("/ui/login").text)},
                          headers={"Origin": "http://evil.test"})
    assert r.status_code == 403
    before = csrf(basic_client.get("/ui/login").text)
    assert login(basic_client, "bob").status_code == 303
    page = basic_client.get("/ui/").text
    assert csrf(page) != before  # a new token after login
    assert basic_client.post("/ui/logout", data={"csrf": before}).status_code == 403
    r = basic_client.post("/ui/logout", data={"csrf": csrf(page)}, follow_redirects=False)
    assert r.status_code == 303
    assert names(basic_client.get("/ui/").text) == ["public/base"]


def test_open_redirects_are_refused(basic_client: TestClient) -> None:
    page = basic_client.get("/ui/login?next=https://evil.test/").text
    r = basic_client.post("/ui/login", data={"username": "bob", "password": "bob-pw", "csrf": csrf(page),
                                             "next": "//evil.test/x"}, follow_redirects=False)
    assert r.headers["location"] == "/ui/"


def test_session_is_signed_and_ends_with_a_password_change(basic_client: TestClient, tmp_path: Path) -> None:
    login(basic_client, "bob")
    value = basic_client.cookies["moorage_session"]
    basic_client.cookies.clear()
    payload, _, signature = value.rpartition(".")
    basic_client.cookies.set("moorage_session", payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:])
    assert names(basic_client.get("/ui/").text) == ["public/base"]  # tampered: anonymous
    basic_client.cookies.clear()
    basic_client.cookies.set("moorage_session", value)
    assert "bob/tool" in names(basic_client.get("/ui/").text)
    (tmp_path / "htpasswd").write_text(bcrypt_line("alice", "alice-pw") + "\n" + bcrypt_line("bob", "new-pw") + "\n")
    assert names(basic_client.get("/ui/").text) == ["public/base"]


def test_secure_cookie_under_tls(basic_client: TestClient) -> None:
    basic_client.base_url = "https://registry.test"
    page = basic_client.get("/ui/login")
    assert "secure" in page.headers["set-cookie"].lower()


def test_token_server_users_log_in(tmp_path: Path) -> None:
    with make_client(tmp_path / "root", auth=token_config(tmp_path)) as c:
        seed_with_tokens(c)
        assert names(c.get("/ui/").text) == ["public/base"]
        assert login(c, "alice").status_code == 303
        page = c.get("/ui/r/public/base").text
        assert "/ui/delete/public/base:1.0" in page
        assert names(c.get("/ui/").text) == ["alice/app", "public/base"]


def test_external_token_issuer_shows_nothing(tmp_path: Path) -> None:
    config = token_config(tmp_path)
    del config["tokenserver"], config["access"]
    with make_client(tmp_path / "root", auth=config) as c:
        assert names(c.get("/ui/").text) == []
        assert "Log in" not in c.get("/ui/").text
        assert c.get("/ui/login").status_code == 404


class TestV1Search:
    def test_format_paging_and_errors(self, tmp_path: Path) -> None:
        with make_client(tmp_path / "root") as c:
            for i in range(5):
                push_image(c, f"team/app{i}", "1.0")
            push_image(c, "other/x", "1.0")
            body = c.get("/v1/search?q=app&n=2&page=2").json()
            assert body == {"num_results": 5, "query": "app", "page": 2, "page_size": 2, "num_pages": 3,
                            "results": [{"name": f"team/app{i}", "description": "", "star_count": 0,
                                         "is_official": False, "is_automated": False} for i in (2, 3)]}
            assert c.get("/v1/search").json()["num_results"] == 6
            push_image(c, "team/described", "latest", labels={"org.opencontainers.image.description": "Payments API"})
            assert c.get("/v1/search?q=described").json()["results"][0]["description"] == "Payments API"
            assert c.get("/v1/search?q=APP").json()["num_results"] == 5
            for bad in ("n=x", "n=0", "page=-1"):
                r = c.get(f"/v1/search?q=a&{bad}")
                assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST"
            assert c.get("/v1/_ping").status_code == 200

    def test_basic_credentials_filter_results(self, basic_client: TestClient) -> None:
        def found(headers: dict[str, str]) -> list[str]:
            r = basic_client.get("/v1/search?q=", headers=headers)
            assert r.status_code == 200, r.text
            return [x["name"] for x in r.json()["results"]]

        assert found({}) == ["public/base"]
        assert found(basic("bob")) == ["bob/tool", "public/base"]
        assert found(basic("alice")) == ["alice/app", "public/base"]
        r = basic_client.get("/v1/search?q=", headers=basic("bob", "wrong"))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")

    def test_token_mode_takes_basic_and_bearer(self, tmp_path: Path) -> None:
        with make_client(tmp_path / "root", auth=token_config(tmp_path)) as c:
            seed_with_tokens(c)
            assert [x["name"] for x in c.get("/v1/search").json()["results"]] == ["public/base"]
            assert [x["name"] for x in c.get("/v1/search", headers=basic("bob")).json()["results"]] == [
                "bob/tool", "public/base"]
            r = c.get("/v1/search", headers=bearer(c, "alice"))
            assert [x["name"] for x in r.json()["results"]] == ["alice/app", "public/base"]
            assert c.get("/v1/search", headers={"Authorization": "Bearer junk"}).status_code == 401


def test_logout_ends_the_session_on_every_replica(tmp_path: Path) -> None:
    """Issue 24, item 8: a copy of the session cookie kept after logout worked for up to 12 h, CSRF
    token included.  Logging out through one replica ends it on the server, so on every replica."""
    auth = {**basic_auth(tmp_path), "access": ACCESS}
    ui = {"secret": "shared by the replicas"}
    with make_client(tmp_path / "root", auth=auth, ui=ui) as one, make_client(tmp_path / "root", auth=auth, ui=ui) as two:
        seed(one)
        assert login(one, "bob").status_code == 303
        stolen = one.cookies["moorage_session"]
        two.cookies.set("moorage_session", stolen)
        page = two.get("/ui/").text
        assert "bob/tool" in names(page)  # one session, good on both replicas
        token = csrf(page)
        assert one.post("/ui/logout", data={"csrf": csrf(one.get("/ui/").text)}).status_code == 200
        two.cookies.clear()
        two.cookies.set("moorage_session", stolen)
        assert names(two.get("/ui/").text) == ["public/base"]  # anonymous now
        r = two.post("/ui/delete/bob/tool:1.0", data={"csrf": token}, follow_redirects=False)
        assert r.status_code in (403, 404) and two.get("/v2/bob/tool/manifests/1.0", headers=basic("bob")).status_code == 200
        # ending every session of a user (the hook for disabling them) reaches every replica too
        login(one, "bob")
        two.cookies.clear()
        two.cookies.set("moorage_session", one.cookies["moorage_session"])
        assert "bob/tool" in names(two.get("/ui/").text)
        asyncio.run(one.app.registry.sessions.end_all("bob"))  # type: ignore[attr-defined]
        assert names(two.get("/ui/").text) == ["public/base"]
        assert names(one.get("/ui/").text) == ["public/base"]
