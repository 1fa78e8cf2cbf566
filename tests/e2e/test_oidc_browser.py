"""Single sign-on in a real browser: Playwright drives Debian's chromium through `moorage serve`'s login page,
a real OpenID provider's login form (tests/oidcprovider.py, Authlib's server side) and back; the first login
creates the account, the groups claim makes the user a member of a team that may push on payments/, an
access token made on the token page pushes with docker; tampered, wrong-nonce and expired ID tokens and a
provider that goes down mid-login are refused with a clear page."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth import htpasswd
from tests.auth.e2e_support import assert_refused, auth_port, login, output
from tests.oidcprovider import Client, Provider, User

from .clients import Docker
from .helpers import shoot, unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
RULES = {"rules": [
    {"repositories": ["payments/**"], "who": ["team:payments-devs"], "actions": ["pull", "push"]},
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
]}


@pytest.fixture
def sso(start_moorage: ServerFactory, tmp_path: Path) -> Iterator[tuple[RegistryProcess, Provider]]:
    port = auth_port()
    callback = f"http://127.0.0.1:{port}/ui/oidc/callback"
    users = [User("dora", "dora-sso-pw", "dora@example.org", ["payments-devs"])]
    with Provider(users, [Client("moorage", "moorage-secret", [callback])]).running() as op:
        local = tmp_path / "htpasswd"
        htpasswd.set_password(local, "alice", "alice-pw", cost=4)
        auth = {"htpasswd": {"path": str(local)}, "access": RULES,
                "oidc": {"issuer": op.issuer, "clientid": "moorage", "clientsecret": "moorage-secret",
                         "label": "Example SSO", "timeout": "3s"}}
        yield start_moorage({"auth": auth}, port=port), op


def sign_in(page: Any, base: str, password: str = "dora-sso-pw") -> None:
    """From the registry's login page through the provider's form."""
    page.goto(f"{base}/login")
    page.click("[data-testid=sso]")
    page.fill("input[name=username]", "dora")
    page.fill("input[name=password]", password)
    page.click("button[value=login]")


def test_sso_login_first_account_team_and_a_token_for_docker(
        sso: tuple[RegistryProcess, Provider], chromium: Any, docker: Docker, images: ImageFactory,
        tmp_path: Path) -> None:
    reg, _ = sso
    base = f"{reg.url}/ui"
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{base}/login")
    assert page.inner_text("[data-testid=sso]") == "Log in with Example SSO"
    sign_in(page, base)
    page.wait_for_url(f"{base}/")
    assert page.inner_text("[data-testid=user]") == "dora"
    shoot(page, tmp_path, "sso-logged-in")

    with sqlite3.connect(reg.root / "moorage.db") as db:  # the first login made the account
        row = db.execute("SELECT u.password, e.source, e.teams FROM users u JOIN external_users e "
                         "ON e.user_id = u.id WHERE u.name = 'dora'").fetchone()
    assert row is not None and row[0] is None and row[1] == "oidc" and "payments-devs" in row[2]

    page.click("[data-testid=tokens-link]")
    page.fill("input[name=name]", "laptop")
    page.select_option("select[name=scopes]", "pull,push")
    page.fill("input[name=repositories]", "payments/**")
    page.click("button >> text=Create token")
    secret = page.inner_text("[data-testid=secret]").strip()
    assert secret.startswith("moorage_pat_")
    shoot(page, tmp_path, "sso-token-created")
    page.reload()
    assert secret not in page.content()  # shown once
    context.close()

    img = images.docker_archive(f"e2e/{unique('sso')}:1", layers=[images.layer()])
    docker.load(img.path)
    ok = login(docker, reg.host, "dora", secret)
    assert ok.returncode == 0, output(ok)
    docker.tag(img.tag, reg.ref("payments/api", "sso"))
    docker.push(reg.ref("payments/api", "sso"))  # the groups claim's team may push there
    docker.tag(img.tag, reg.ref("alice/app", "sso"))
    assert_refused(docker("push", reg.ref("alice/app", "sso"), check=False))


@pytest.mark.parametrize(("mischief", "message"), [
    ("tamper", "signature does not verify"),
    ("nonce", "nonce mismatch"),
    ("expired", "has expired"),
])
def test_bad_id_tokens_are_refused_with_a_clear_page(
        sso: tuple[RegistryProcess, Provider], chromium: Any, mischief: str, message: str) -> None:
    reg, op = sso
    base = f"{reg.url}/ui"
    page = chromium.new_page()
    op.mischief = mischief
    sign_in(page, base)
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Single sign-on failed"
    assert message in page.inner_text("main")
    page.goto(f"{base}/")
    assert page.locator("[data-testid=user]").count() == 0
    page.close()


def test_provider_down_during_the_login_is_a_clear_page(
        sso: tuple[RegistryProcess, Provider], chromium: Any) -> None:
    reg, op = sso
    base = f"{reg.url}/ui"
    page = chromium.new_page()
    op.mischief = "down"  # gone between sending the browser back and the code's redemption
    sign_in(page, base)
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Single sign-on unavailable"
    assert "cannot be reached" in page.inner_text("main")
    page.goto(f"{base}/login")  # local users still log in
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw")
    page.click("button[type=submit] >> text=Log in")
    assert page.inner_text("[data-testid=user]") == "alice"
    page.close()
