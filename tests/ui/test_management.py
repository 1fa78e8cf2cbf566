"""The web UI's management pages (users, teams, namespaces, account, changes) through httpx against the
ASGI app with ``auth.database``: what each role sees and may do, the service's refusals as pages with
their status, CSRF, escaping, sessions that end, and the repository page saying who may push."""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from auth.manage import Management
from auth.terms import OPERATOR, Caller
from tests.api.conftest import make_client
from tests.ui.conftest import csrf, push_image

SCRIPT = "<script>alert(1)</script>"
PAGES = ["/ui/users", "/ui/users/dev", "/ui/teams", "/ui/teams/payments-devs", "/ui/namespaces",
         "/ui/namespaces/payments", "/ui/account", "/ui/changes"]
POSTS: list[tuple[str, dict[str, str]]] = [
    ("/ui/users", {"name": "mallory", "password": "x-pw"}),
    ("/ui/users/dev", {"action": "disable"}),
    ("/ui/teams", {"name": "evil"}),
    ("/ui/teams/payments-devs", {"action": "add", "user": "otto"}),
    ("/ui/namespaces", {"path": "evil"}),
    ("/ui/namespaces/payments", {"action": "member", "kind": "user", "name": "otto", "role": "owner"}),
    ("/ui/account", {"action": "email", "email": "x@example.com"}),
]


def password(user: str) -> str:
    return f"{user}-secret-pw"


async def company(manage: Management) -> None:
    """ada admin; olga owns payments; team payments-devs = {dev} is developer there; rita reads; otto
    is nobody's."""
    await manage.create_user(OPERATOR, "ada", password("ada"), admin=True)
    for name in ("olga", "dev", "rita", "otto"):
        await manage.create_user(OPERATOR, name, password(name))
    await manage.create_team(OPERATOR, "payments-devs", ["dev"])
    await manage.create_namespace(OPERATOR, "payments")
    await manage.set_member(OPERATOR, "payments", "user", "olga", "owner")
    await manage.set_member(OPERATOR, "payments", "team", "payments-devs", "developer")
    await manage.set_member(OPERATOR, "payments", "user", "rita", "reader")


class Browser:
    """One visitor's cookies on the shared client (the app and its event loop stay one)."""

    def __init__(self, client: TestClient, user: str | None = None, secret: str | None = None) -> None:
        self.client = client
        self.jar = httpx.Cookies()
        self.token = csrf(self.get("/ui/login").text)
        if user is not None:
            r = self.login(user, secret or password(user))
            assert r.status_code == 303, r.text
            self.token = csrf(self.get("/ui/").text)

    def login(self, user: str, secret: str) -> httpx.Response:
        self.token = csrf(self.get("/ui/login").text)
        return self.post("/ui/login", username=user, password=secret, next="/ui/")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.client.cookies = self.jar
        try:
            return self.client.request(method, url, follow_redirects=False, **kwargs)
        finally:
            self.jar = self.client.cookies

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(self, url: str, csrf_token: str | None = "", headers: dict[str, str] | None = None,
             **fields: str) -> httpx.Response:
        """A form post with this session's token ("" : the current one; None: none)."""
        data = dict(fields)
        if csrf_token is not None:
            data["csrf"] = csrf_token or self.token
        return self.request("POST", url, data=data, headers=headers or {})

    def submit(self, url: str, **fields: str) -> httpx.Response:
        """Post, then follow the redirect to the page that says what was done."""
        r = self.post(url, **fields)
        if r.status_code == 303:
            return self.get(r.headers["location"])
        return r


def said(page: httpx.Response, kind: str = "done") -> str:
    found = re.search(rf'data-testid="{kind}">(.*?)</p>', page.text, re.S)
    return html.unescape(found.group(1).strip()) if found else ""


def rows(page: httpx.Response, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', page.text)


def basic(user: str, secret: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{secret or password(user)}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "root", auth={"database": {}}) as c:
        manage = c.app.registry.management
        manage.cost = 4
        c.portal.call(company, manage)
        c.portal.call(manage.cache.refresh)  # at once, not at the feed's next poll
        yield c


@pytest.fixture
def manage(client: TestClient) -> Management:
    return client.app.registry.management


def call(client: TestClient, work: Any, *args: Any, **kwargs: Any) -> Any:
    """The service on the app's event loop, and the policy reloaded with the change."""
    async def run() -> Any:
        result = await work(*args, **kwargs)
        await client.app.registry.management.cache.refresh()
        return result

    return client.portal.call(run)


# --- users ---------------------------------------------------------------------------------------------


def test_admin_creates_users_and_bad_names_get_clear_pages(client: TestClient) -> None:
    ada = Browser(client, "ada")
    page = ada.submit("/ui/users", name="nina", email="nina@example.com", password="nina-pw", admin="on")
    assert page.status_code == 200 and said(page) == "User created."
    assert "nina@example.com" in page.text and '<span class="badge admin">admin</span>' in page.text
    Browser(client, "nina", "nina-pw")  # logs in with the password set here
    for name, status, message in (("team/x", 400, "invalid user name"), ("nina", 409, "exists"),
                                  ("Upper", 400, "lowercase"), ("a" * 65, 400, "at most 64"),
                                  ("", 400, "a user name is required")):
        page = ada.post("/ui/users", name=name, password="pw-123456")
        assert page.status_code == status, (name, page.status_code)
        assert message in said(page, "error").lower(), said(page, "error")
        assert "Create a user" in page.text  # the form again, with what was typed
    page = ada.post("/ui/users", name="emma", email="not-an-address", password="pw-123456")
    assert page.status_code == 400 and "e-mail" in said(page, "error")
    assert 'value="emma"' in page.text and "pw-123456" not in page.text  # typed back, the password never


def test_users_are_searched_and_paged(client: TestClient, manage: Management) -> None:
    for i in range(60):
        call(client, manage.create_user, OPERATOR, f"user{i:02d}", email=f"u{i}@corp.example", password_hash="$2b$04$x")
    ada = Browser(client, "ada")
    first = ada.get("/ui/users")
    assert rows(first, "data-user")[:3] == ["ada", "dev", "olga"] and len(rows(first, "data-user")) == 50
    following = re.search(r'href="(/ui/users\?[^"]*last=[^"]+)" rel="next"', first.text).group(1)
    second = ada.get(following.replace("&amp;", "&"))
    assert len(rows(second, "data-user")) == 15 and 'rel="next"' not in second.text
    assert rows(second, "data-user")[-1] == "user59" and not set(rows(first, "data-user")) & set(rows(second, "data-user"))
    assert rows(ada.get("/ui/users?q=user05"), "data-user") == ["user05"]
    assert rows(ada.get("/ui/users?q=U7%40CORP"), "data-user") == ["user07"]  # e-mail, any case
    assert rows(ada.get("/ui/users?q=%25"), "data-user") == []  # a LIKE wildcard is a character here
    assert "No user matches" in ada.get(f"/ui/users?q={SCRIPT}").text


def test_disable_enable_admin_reset_and_remove(client: TestClient) -> None:
    ada = Browser(client, "ada")
    page = ada.submit("/ui/users/rita", action="disable")
    assert said(page) .startswith("User disabled") and '<span class="badge disabled">' in page.text
    assert client.get("/v2/payments/x/tags/list", headers=basic("rita")).status_code == 401
    page = ada.submit("/ui/users/rita", action="enable")
    assert said(page) == "User enabled." and client.get("/v2/", headers=basic("rita")).status_code == 200
    assert said(ada.submit("/ui/users/rita", action="admin")) == "User is now an admin."
    assert said(ada.submit("/ui/users/rita", action="unadmin")) == "User is no longer an admin."
    assert said(ada.submit("/ui/users/rita", action="password", password="rita-new-pw")).startswith("Password reset")
    assert client.get("/v2/", headers=basic("rita")).status_code == 401
    assert client.get("/v2/", headers=basic("rita", "rita-new-pw")).status_code == 200
    assert said(ada.submit("/ui/users/rita", action="email", email="rita@corp.example")) == "E-mail address saved."
    page = ada.get("/ui/users/rita")
    assert 'href="?confirm=remove" data-testid="remove"' in page.text and 'data-testid="confirm"' not in page.text
    page = ada.get("/ui/users/rita?confirm=remove")  # asks first
    assert page.status_code == 200 and 'data-testid="confirm"' in page.text and "Remove user rita?" in page.text
    assert "rita" in rows(ada.get("/ui/users"), "data-user")
    page = ada.submit("/ui/users/rita", action="remove")
    assert said(page) == "User rita removed." and "rita" not in rows(page, "data-user")
    assert ada.get("/ui/users/rita").status_code == 404
    assert ada.post("/ui/users/rita", action="disable").status_code == 404
    assert ada.post("/ui/users/dev", action="fly").status_code == 400


def test_the_last_admin_is_kept_and_the_page_says_why(client: TestClient) -> None:
    ada = Browser(client, "ada")
    page = ada.get("/ui/users/ada")
    assert "ada is the last enabled admin" in said(page, "last-admin")
    assert re.search(r'data-testid="disable" disabled', page.text) and re.search(r'data-testid="remove" disabled', page.text)
    for action in ("disable", "unadmin"):
        page = ada.post("/ui/users/ada", action=action)
        assert page.status_code == 409 and said(page, "error") == "'ada' is the last admin: make another user admin first."
    assert ada.post("/ui/users/ada", action="remove").status_code == 409
    assert 'data-testid="confirm"' not in ada.get("/ui/users/ada?confirm=remove").text
    ada.submit("/ui/users/olga", action="admin")
    page = ada.get("/ui/users/ada")
    assert 'data-testid="last-admin"' not in page.text and 'data-testid="disable" disabled' not in page.text
    assert said(ada.submit("/ui/users/ada", action="unadmin")) == "User is no longer an admin."


def test_disabling_or_a_new_password_ends_their_sessions(client: TestClient) -> None:
    ada = Browser(client, "ada")
    rita = Browser(client, "rita")
    assert 'data-testid="user">rita<' in rita.get("/ui/namespaces").text
    ada.submit("/ui/users/rita", action="disable")
    page = until(lambda: rita.get("/ui/"), lambda r: 'data-testid="user"' not in r.text)
    assert "Log in" in page.text and rita.get("/ui/namespaces/payments").status_code == 404
    assert rita.login("rita", password("rita")).status_code == 401
    ada.submit("/ui/users/rita", action="enable")
    rita = Browser(client, "rita")
    ada.submit("/ui/users/rita", action="password", password="rita-2-pw")
    until(lambda: rita.get("/ui/"), lambda r: 'data-testid="user"' not in r.text)


def until(fetch: Any, done: Any, within: float = 2.0) -> httpx.Response:
    """The first answer that is ``done`` within ``within`` seconds (a change reaches a session's
    check through the policy snapshot, confirmed every half second)."""
    deadline = time.monotonic() + within
    while True:
        answer = fetch()
        if done(answer):
            return answer
        assert time.monotonic() < deadline, answer.text[:500]
        time.sleep(0.05)


# --- account -------------------------------------------------------------------------------------------


def test_account_shows_roles_and_changes_the_password(client: TestClient) -> None:
    dev = Browser(client, "dev")
    other = Browser(client, "dev")  # the same user in another browser
    page = dev.get("/ui/account")
    assert rows(page, "data-namespace") == ["dev", "payments"]
    assert re.search(r'data-namespace="payments">.*?role-developer', page.text, re.S)
    assert '<span class="chip">payments-devs</span>' in page.text
    page = dev.post("/ui/account", action="password", current="wrong", password="n-pw-1", repeat="n-pw-1")
    assert page.status_code == 403 and said(page, "error") == "The current password is wrong."
    page = dev.post("/ui/account", action="password", current=password("dev"), password="n-pw-1", repeat="n-pw-2")
    assert page.status_code == 400 and "differ" in said(page, "error")
    page = dev.post("/ui/account", action="password", current=password("dev"), password="", repeat="")
    assert page.status_code == 400
    page = dev.submit("/ui/account", action="password", current=password("dev"), password="n-pw-1", repeat="n-pw-1")
    assert page.status_code == 200 and said(page).startswith("Password changed")
    assert 'data-testid="user">dev<' in page.text  # this session goes on
    dev.token = csrf(page.text)  # a new token with the new session
    assert said(dev.submit("/ui/account", action="email", email="dev@corp.example")) == "E-mail address saved."
    assert 'data-testid="user"' not in other.get("/ui/").text  # the other one ended
    assert client.get("/v2/", headers=basic("dev", "n-pw-1")).status_code == 200
    assert client.get("/v2/", headers=basic("dev")).status_code == 401
    assert Browser(client).get("/ui/account").status_code == 403


def test_the_personal_namespace_is_its_users_own(client: TestClient) -> None:
    otto = Browser(client, "otto")
    page = otto.get("/ui/namespaces/otto")
    assert page.status_code == 200 and "the personal namespace of <strong>otto</strong>" in page.text
    assert Browser(client, "rita").get("/ui/namespaces/otto").status_code == 404


# --- teams ---------------------------------------------------------------------------------------------


def test_teams_members_are_added_paged_and_removed(client: TestClient, manage: Management) -> None:
    ada = Browser(client, "ada")
    page = ada.submit("/ui/teams", name="platform")
    assert said(page) == "Team created." and "platform" in page.text
    assert ada.post("/ui/teams", name="platform").status_code == 409
    assert ada.post("/ui/teams", name="a/b").status_code == 400
    assert said(ada.submit("/ui/teams/platform", action="add", user="otto")) == "Member added."
    page = ada.post("/ui/teams/platform", action="add", user="ghost")
    assert page.status_code == 404 and said(page, "error") == "No user 'ghost'."
    names = [f"m{i:03d}" for i in range(75)]
    for name in names:
        call(client, manage.create_user, OPERATOR, name, password_hash="$2b$04$x")
    call(client, manage.create_team, OPERATOR, "big", names)
    first = ada.get("/ui/teams/big")
    assert "75 members" in first.text and rows(first, "data-member") == names[:50]
    second = ada.get(re.search(r'href="([^"]+)" rel="next"', first.text).group(1))
    assert rows(second, "data-member") == names[50:]
    page = ada.submit("/ui/teams/platform", action="remove-member", user="otto")
    assert said(page) == "Member removed." and rows(page, "data-member") == []
    assert "Remove team platform?" in ada.get("/ui/teams/platform?confirm=remove").text
    page = ada.submit("/ui/teams/platform", action="remove")
    assert said(page) == "Team platform removed." and ada.get("/ui/teams/platform").status_code == 404
    dev = Browser(client, "dev")  # a member sees their team, read-only; others not at all
    page = dev.get("/ui/teams/payments-devs?confirm=remove")
    assert page.status_code == 200 and 'name="action"' not in page.text
    assert dev.post("/ui/teams/payments-devs", action="remove").status_code == 403
    assert Browser(client, "otto").get("/ui/teams/payments-devs").status_code == 403


# --- namespaces ----------------------------------------------------------------------------------------


def test_owner_manages_members_and_settings(client: TestClient) -> None:
    olga = Browser(client, "olga")
    page = olga.get("/ui/namespaces/payments")
    assert rows(page, "data-member") == ["team:payments-devs", "user:olga", "user:rita"]
    assert 'data-testid="grant"' in page.text and 'name="visibility"' in page.text
    page = olga.submit("/ui/namespaces/payments", action="member", kind="user", name="otto", role="developer")
    assert said(page) == "Member saved." and "user:otto" in rows(page, "data-member")
    assert "Who may push:</strong> team <span class=\"mono\">payments-devs</span> (developer)," in page.text
    assert '<span class="mono">otto</span> (developer)' in page.text
    page = olga.submit("/ui/namespaces/payments", action="unmember", kind="user", name="otto")
    assert said(page) == "Member removed." and "user:otto" not in rows(page, "data-member")
    for fields, status, message in (
        ({"action": "member", "kind": "user", "name": "otto", "role": "admin"}, 400, "Unknown role 'admin'"),
        ({"action": "member", "kind": "robot", "name": "otto", "role": "reader"}, 400, "a user or a team"),
        ({"action": "member", "kind": "user", "name": "ghost", "role": "reader"}, 404, "No user 'ghost'."),
        ({"action": "unmember", "kind": "user", "name": "otto"}, 404, "No member"),
        ({"action": "quota", "quota": "10GiB"}, 403, "Only admins set quotas."),
        ({"action": "retention", "olderthan": "3 fortnights"}, 400, "invalid duration"),
        ({"action": "retention", "keeptags": "latest"}, 400, "set keepnewest, olderthan or both"),
        ({"action": "immutable", "patterns": "v* <b>"}, 400, "bad tag pattern"),
        ({"action": "visibility", "visibility": "secret"}, 400, "public or private"),
        ({"action": "create", "name": "Api"}, 400, "invalid namespace"),
    ):
        page = olga.post("/ui/namespaces/payments", **fields)
        assert page.status_code == status, (fields, page.status_code, said(page, "error"))
        assert message.lower() in said(page, "error").lower(), (fields, said(page, "error"))
    page = olga.submit("/ui/namespaces/payments", action="immutable", patterns="v*, release-?")
    assert said(page) == "Immutable tags saved." and 'value="v*, release-?"' in page.text
    page = olga.submit("/ui/namespaces/payments", action="retention", keepnewest="5", olderthan="30d", keeptags="latest")
    assert said(page) == "Retention saved." and 'value="30d"' in page.text and 'value="5"' in page.text
    page = olga.submit("/ui/namespaces/payments", action="visibility", visibility="public")
    assert said(page) == "Visibility saved." and '<span class="badge public">public</span>' in page.text
    page = olga.submit("/ui/namespaces/payments", action="create", name="api")
    assert said(page) == "Namespace created." and page.url.path == "/ui/namespaces/payments/api"
    assert 'data-testid="remove"' in olga.get("/ui/namespaces/payments/api").text  # owner above removes it
    assert 'data-testid="remove"' not in olga.get("/ui/namespaces/payments").text  # not the top level
    assert 'data-testid="confirm"' not in olga.get("/ui/namespaces/payments?confirm=remove").text
    assert "Remove namespace payments/api?" in olga.get("/ui/namespaces/payments/api?confirm=remove").text
    page = olga.submit("/ui/namespaces/payments/api", action="remove")
    assert page.url.path == "/ui/namespaces" and "Namespace payments/api removed" in said(page)


def test_lower_roles_read_and_outsiders_see_nothing(client: TestClient) -> None:
    for user in ("rita", "dev"):
        browser = Browser(client, user)
        page = browser.get("/ui/namespaces/payments?confirm=remove")
        assert page.status_code == 200 and 'data-testid="grant"' not in page.text
        assert 'name="action"' not in page.text  # no form at all
        assert rows(page, "data-member") == ["team:payments-devs", "user:olga", "user:rita"]
        assert browser.post("/ui/namespaces/payments", action="member", kind="user", name=user,
                            role="owner").status_code == 403
    otto = Browser(client, "otto")
    assert otto.get("/ui/namespaces/payments").status_code == 404  # alike: missing and not theirs
    assert otto.get("/ui/namespaces/nothing-here").status_code == 404
    assert "payments" not in rows(otto.get("/ui/namespaces"), "data-namespace")
    assert otto.post("/ui/namespaces/payments", action="visibility", visibility="public").status_code == 404
    assert rows(otto.get("/ui/namespaces"), "data-namespace") == ["otto"]  # his personal one: he owns it
    assert 'Create a namespace' in otto.get("/ui/namespaces").text  # below his own
    assert otto.post("/ui/namespaces", path="payments/evil").status_code in (403, 404)
    assert otto.post("/ui/namespaces", path="evil").status_code == 403
    page = otto.submit("/ui/namespaces", path="otto/tools")
    assert said(page) == "Namespace created." and page.url.path == "/ui/namespaces/otto/tools"


def test_creating_namespaces(client: TestClient) -> None:
    ada = Browser(client, "ada")
    page = ada.submit("/ui/namespaces", path="billing/", public="on")
    assert said(page) == "Namespace created." and page.url.path == "/ui/namespaces/billing"
    page = ada.post("/ui/namespaces", path="billing")
    assert page.status_code == 409 and said(page, "error") == "Namespace 'billing' exists."
    assert ada.post("/ui/namespaces", path="../etc").status_code == 400
    assert ada.post("/ui/namespaces", path="Billing").status_code == 400
    page = Browser(client, "olga").post("/ui/namespaces", path="hr")
    assert page.status_code == 403 and said(page, "error") == "Only admins create top-level namespaces."
    page = ada.submit("/ui/namespaces/billing", action="quota", quota="2GiB")
    assert said(page) == "Quota saved." and "2.0 GiB" in page.text
    assert ada.post("/ui/namespaces/billing", action="quota", quota="lots").status_code == 400
    assert said(ada.submit("/ui/namespaces/billing", action="quota", quota="")) == "Quota saved."


# --- changes -------------------------------------------------------------------------------------------


def test_changes_are_listed_for_admins_and_owners(client: TestClient, manage: Management) -> None:
    olga = Browser(client, "olga")
    olga.submit("/ui/namespaces/payments", action="member", kind="user", name="otto", role="reader")
    ada = Browser(client, "ada")
    page = ada.get("/ui/changes")
    first = re.search(r'<tr data-change="\d+">(.*?)</tr>', page.text, re.S).group(1)
    assert "olga" in first and "testclient" in first and "namespace.member.set" in first
    assert "user:otto" in first and "role:</span> — → reader" in first
    assert "user.create" in page.text and "team.create" in page.text
    mine = olga.get("/ui/changes")
    assert mine.status_code == 200 and "user.create" not in mine.text and "user:otto" in mine.text
    assert olga.get("/ui/changes?namespace=payments").status_code == 200
    assert olga.get("/ui/changes?namespace=other").status_code == 403
    otto = Browser(client, "otto").get("/ui/changes")  # he owns only his personal namespace
    assert otto.status_code == 200 and "payments" not in otto.text and "user.create" not in otto.text
    assert Browser(client, "otto").get("/ui/changes?namespace=payments").status_code == 403
    assert ada.get("/ui/changes?before=x").status_code == 400
    for i in range(60):
        call(client, manage.update_user, Caller("ada"), "otto", email=f"o{i}@corp.example")
    first = ada.get("/ui/changes")
    ids = [int(i) for i in rows(first, "data-change")]
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    older = ada.get(re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&"))
    assert max(int(i) for i in rows(older, "data-change")) == ids[-1] - 1


# --- every page: rights, CSRF, escaping, bad input -----------------------------------------------------


def test_pages_refuse_whoever_may_not(client: TestClient) -> None:
    anonymous, otto = Browser(client), Browser(client, "otto")
    expected = {"/ui/users": 403, "/ui/users/dev": 403, "/ui/teams": 403, "/ui/teams/payments-devs": 403,
                "/ui/namespaces": 200, "/ui/namespaces/payments": 404, "/ui/account": 403, "/ui/changes": 403}
    for url, status in expected.items():
        assert anonymous.get(url).status_code == status, url
    for url in ("/ui/users", "/ui/users/dev", "/ui/teams/payments-devs", "/ui/changes?namespace=payments"):
        page = otto.get(url)
        assert page.status_code == 403 and "<h1>Not allowed</h1>" in page.text, url
    for url, fields in POSTS[:6]:
        assert otto.post(url, **fields).status_code in (403, 404), url
    ada_nav = Browser(client, "ada").get("/ui/")
    assert 'href="/ui/users"' in ada_nav.text and 'href="/ui/teams"' in ada_nav.text
    assert 'href="/ui/users"' not in otto.get("/ui/").text and 'href="/ui/namespaces"' in otto.get("/ui/").text


def test_posts_without_the_form_token_are_refused(client: TestClient) -> None:
    ada = Browser(client, "ada")
    for url, fields in POSTS:
        assert ada.post(url, csrf_token=None, **fields).status_code == 403, url
        assert ada.post(url, csrf_token="forged", **fields).status_code == 403, url
        page = ada.post(url, headers={"Origin": "https://evil.example"}, **fields)
        assert page.status_code == 403 and "another site" in page.text, url
    assert "mallory" not in ada.get("/ui/users").text and not ada.get("/ui/users/dev").text.count("badge disabled")


def test_user_supplied_values_are_escaped(client: TestClient) -> None:
    ada = Browser(client, "ada")
    evil = f"{SCRIPT}@example.com"
    ada.submit("/ui/users", name="eve", email=evil, password="eve-pw")
    ada.submit("/ui/users/dev", action="email", email=evil)
    pages = [ada.get(url) for url in ("/ui/users", "/ui/users/eve", "/ui/changes", f"/ui/users?q={SCRIPT}")]
    pages += [ada.post("/ui/teams", name=SCRIPT), ada.post("/ui/namespaces", path=SCRIPT),
              ada.post("/ui/namespaces/payments", action="retention", olderthan=SCRIPT),
              ada.post("/ui/namespaces/payments", action="member", kind="user", name=SCRIPT, role="reader"),
              ada.post("/ui/namespaces/payments", action="immutable", patterns=SCRIPT),
              ada.post("/ui/teams/payments-devs", action="add", user=SCRIPT),
              ada.post("/ui/users/dev", action=SCRIPT), ada.get(f"/ui/changes?namespace={SCRIPT}")]
    for page in pages:
        assert "<script>alert" not in page.text, page.url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in pages[1].text
    assert "&lt;script&gt;" in pages[2].text


def test_bad_forms_get_clear_pages(client: TestClient) -> None:
    ada = Browser(client, "ada")
    page = ada.post("/ui/namespaces/payments", action="immutable", patterns="v* " * 40_000)
    assert page.status_code == 413 and "larger than 64 KiB" in page.text
    fields = {f"f{i}": "x" for i in range(60)}
    assert ada.post("/ui/teams", name="t", **fields).status_code == 400
    r = ada.request("POST", "/ui/teams", content=b'{"name": "t"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "form" in r.text
    r = ada.request("POST", "/ui/teams", content=b"name=%ff%fe&csrf=" + ada.token.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    page = ada.post("/ui/namespaces/payments", action="immutable", patterns=" ".join(f"v{i}*" for i in range(101)))
    assert page.status_code == 400 and "at most 100" in said(page, "error").lower()


def test_repository_page_says_who_may_push(client: TestClient) -> None:
    dev = Browser(client, "dev")
    client.headers.update(basic("dev"))
    push_image(client, "payments/api", "1.0")
    push_image(client, "dev/tool", "1.0")
    client.headers.pop("Authorization")
    page = dev.get("/ui/r/payments/api")
    line = re.search(r'data-testid="who-may-push">(.*?)</p>', page.text, re.S).group(1)
    assert "team <span class=\"mono\">payments-devs</span> (developer)" in line and "rita" not in line
    assert "and administrators" in line and 'href="/ui/namespaces/payments"' in line
    line = re.search(r'data-testid="who-may-push">(.*?)</p>', dev.get("/ui/r/dev/tool").text, re.S).group(1)
    assert '<span class="mono">dev</span> (owner)' in line
    assert Browser(client, "otto").get("/ui/r/payments/api").status_code == 404
    page = Browser(client, "ada").submit("/ui/namespaces/payments", action="member", kind="team",
                                         name="payments-devs", role="reader")
    line = re.search(r'data-testid="who-may-push">(.*?)</p>', page.text, re.S).group(1)
    assert "payments-devs" not in line and "olga" in line


def test_without_a_database_there_are_no_management_pages(tmp_path: Path) -> None:
    with make_client(tmp_path / "root") as c:
        assert c.get("/ui/users").status_code == 404
        assert 'href="/ui/namespaces"' not in c.get("/ui/").text
        assert "who-may-push" not in c.get("/ui/").text
