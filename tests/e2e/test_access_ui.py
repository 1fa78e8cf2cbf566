"""Access control managed in the web UI, with real clients, on SQLite and on PostgreSQL: Playwright
driving Debian's chromium against `moorage serve` with `auth.database`, and real docker.

The first admin comes from the CLI (`moorage user add --admin`); the admin creates users and a team in
the UI, the owner of `payments/` grants the team `developer` there; a member pushes `payments/api:1.0`
with docker, a reader pulls it and is refused a push (403 DENIED), an outsider sees neither the
repository nor its tags in the catalog, /v1/search or the UI; revoking the team in the UI refuses the
member's next push; disabling a user in the UI ends their session.  Immutable tags set in the namespace
page refuse docker's overwrite of `v1` while `latest` moves.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth.e2e_support import assert_refused, auth_port, login, output

from .clients import Docker
from .helpers import run, shoot, unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
USERS = {name: f"{name}-e2e-pw" for name in ("ada", "olga", "dev", "rita", "otto")}
XSS = "<script>window.__xss=1</script>@corp.example"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, start_moorage: ServerFactory, moorage_bin: str) -> RegistryProcess:
    """`moorage serve` with the database's users (SQLite beside the data, or a fresh PostgreSQL
    database), and its first admin made with the CLI while it runs."""
    config: dict[str, Any] = {"auth": {"database": {}}}
    if request.param == "postgresql":
        config["database"] = {"url": request.getfixturevalue("postgres_url")}
    reg = start_moorage(config, port=auth_port())
    made = run([moorage_bin, "user", "add", "ada", "--admin", "-c", str(reg.config_path)], input=USERS["ada"] + "\n",
               check=False, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    return reg


class Browser:
    """A browser context of one user (its own cookies) on the registry's UI."""

    def __init__(self, chromium: Any, registry: RegistryProcess, user: str | None = None) -> None:
        self.context = chromium.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = f"{registry.url}/ui"
        if user is not None:
            self.log_in(user)

    def log_in(self, user: str) -> None:
        page = self.page
        page.goto(f"{self.base}/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", USERS[user])
        page.click("button[type=submit] >> text=Log in")
        until(lambda: page.locator("[data-testid=user]").count() == 1, f"{user} logged in")  # the feed's 0.5 s

    def open(self, path: str) -> Any:
        self.page.goto(f"{self.base}{path}")
        return self.page

    def done(self) -> str:
        """What the page says was done; fails with the page's error when it says one."""
        if self.page.locator("[data-testid=error]").count():
            raise AssertionError(self.page.inner_text("[data-testid=error]"))
        return self.page.inner_text("[data-testid=done]")

    def close(self) -> None:
        self.context.close()


def until(check: Any, what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.1)


def basic(user: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, USERS[user])


def create_user(ada: Browser, name: str, email: str = "") -> None:
    page = ada.open("/users")
    page.fill("input[name=name]", name)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", USERS[name])
    page.click("button >> text=Create user")
    assert ada.done() == "User created."


def grant(browser: Browser, namespace: str, kind: str, name: str, role: str) -> None:
    page = browser.open(f"/namespaces/{namespace}")
    form = page.locator("[data-testid=grant]")
    form.locator("select[name=kind]").select_option(kind)
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=role]").select_option(role)
    form.locator("button >> text=Grant").click()
    assert browser.done() == "Member saved."


def docker_login(docker: Docker, registry: RegistryProcess, user: str) -> None:
    done = login(docker, registry.host, user, USERS[user])
    assert done.returncode == 0, output(done)


def test_admin_owner_member_reader_and_outsider(registry: RegistryProcess, moorage_bin: str, chromium: Any,
                                                docker: Docker, images: ImageFactory, artifacts: Path) -> None:
    ada = Browser(chromium, registry, "ada")
    for name in ("olga", "dev", "rita", "otto"):
        create_user(ada, name, f"{name}@corp.example")
    made = run([moorage_bin, "user", "add", "mallory", "--email", XSS, "-c", str(registry.config_path)],
               input="mallory-pw\n", check=False, timeout=60)  # the browser would not send it: type=email
    assert made.returncode == 0, made.stdout + made.stderr
    page = ada.open("/users")
    until(lambda: ada.open("/users").locator("tr[data-user]").count() == 6, "the CLI's user listed")
    assert XSS in ada.page.inner_text("[data-testid=users]")
    assert ada.page.evaluate("window.__xss") is None  # shown as text, never run
    page = ada.open("/teams")
    page.fill("input[name=name]", "payments-devs")
    page.click("button >> text=Create team")
    assert ada.done() == "Team created."
    page.fill("input[name=user]", "dev")
    page.click("button >> text=Add")
    assert ada.done() == "Member added." and page.locator("tr[data-member=dev]").count() == 1
    page = ada.open("/namespaces")
    page.fill("input[name=path]", "payments")
    page.click("button >> text=Create namespace")
    assert ada.done() == "Namespace created."
    grant(ada, "payments", "user", "olga", "owner")
    shoot(ada.open("/users"), artifacts, "access-users")

    olga = Browser(chromium, registry, "olga")
    grant(olga, "payments", "team", "payments-devs", "developer")
    grant(olga, "payments", "user", "rita", "reader")
    page = olga.open("/namespaces/payments")
    assert page.locator("tr[data-member]").all_inner_texts()[0].startswith("team")
    shoot(page, artifacts, "access-namespace")
    page.set_viewport_size({"width": 1100, "height": 640})
    shoot(page, artifacts, "ui-access", full_page=False)  # README's (docs/ui-access.png)

    # a member of the team pushes with docker
    img = images.docker_archive(f"e2e/{unique('access')}:1", layers=[images.layer()])
    docker.load(img.path)
    ref = registry.ref("payments/api", "1.0")
    docker.tag(img.tag, ref)
    docker_login(docker, registry, "dev")
    docker.push(ref)
    page = olga.open("/r/payments/api")
    who = page.inner_text("[data-testid=who-may-push]")
    assert "team payments-devs (developer)" in who and "olga (owner)" in who and "rita" not in who, who
    shoot(page, artifacts, "access-repository")

    # the reader pulls, and is refused a push: 403 DENIED
    docker_login(docker, registry, "rita")
    docker.rmi(ref)
    docker.pull(ref)
    assert_refused(docker("push", ref, check=False))
    r = httpx.post(f"{registry.url}/v2/payments/api/blobs/uploads/", auth=basic("rita"))
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text

    # the outsider sees neither the repository nor its tags: catalog, /v1/search, the UI
    catalog = httpx.get(f"{registry.url}/v2/_catalog", auth=basic("otto"))
    assert catalog.status_code == 200 and "payments/api" not in catalog.json()["repositories"]
    assert "payments/api" in httpx.get(f"{registry.url}/v2/_catalog", auth=basic("ada")).json()["repositories"]
    search = httpx.get(f"{registry.url}/v1/search", params={"q": "payments"}, auth=basic("otto"))
    assert search.status_code == 200 and search.json()["results"] == []
    tags = httpx.get(f"{registry.url}/v2/payments/api/tags/list", auth=basic("otto"))
    assert tags.status_code in (401, 403, 404) and "1.0" not in tags.text
    otto = Browser(chromium, registry, "otto")
    assert "payments/api" not in otto.open("/").inner_text("main")
    assert otto.open("/search?q=payments").locator("a.repo").count() == 0
    assert otto.open("/r/payments/api").title().startswith("Not found")
    assert otto.open("/r/payments/api:1.0").title().startswith("Not found")
    assert otto.open("/namespaces/payments").title().startswith("Not found")
    assert otto.open("/users").title().startswith("Not allowed")

    # the owner revokes the team in the UI: the member's next push is refused
    docker_login(docker, registry, "dev")
    page = olga.open("/namespaces/payments")
    page.click("button[aria-label='Remove team payments-devs']")
    assert olga.done() == "Member removed."
    revoked = time.monotonic()
    until(lambda: httpx.post(f"{registry.url}/v2/payments/api/blobs/uploads/", auth=basic("dev"),
                             timeout=10).status_code == 403, "refusing dev's upload", within=2.0)
    print(f"an upload refused {time.monotonic() - revoked:.2f} s after the revocation was confirmed")
    # every worker (each follows the database on its own) refuses within 2 s: docker pushes after that bound
    time.sleep(max(0.0, revoked + 2.0 - time.monotonic()))
    second = registry.ref("payments/api", "1.1")
    docker.tag(img.tag, second)
    assert_refused(docker("push", second, check=False))

    # the change log lists who did what from where, for the owner and the admin
    page = olga.open("/changes?namespace=payments")
    first = page.locator("tr[data-change]").first.inner_text()
    assert "olga" in first and "namespace.member.remove" in first and "team:payments-devs" in first
    assert "127.0.0.1" in first and "developer" in first
    assert "user.create" in ada.open("/changes").inner_text("main")
    shoot(ada.page, artifacts, "access-changes")

    # disabling a user in the UI ends their session and refuses them on /v2
    page = ada.open("/users/otto")
    page.click("[data-testid=disable]")
    assert ada.done().startswith("User disabled")
    disabled = time.monotonic()
    until(lambda: otto.open("/").locator("[data-testid=user]").count() == 0, "otto's session ended", 2.5)
    # on /v2 within the change feed's 2 s of the disable: each worker confirms its cached users on its own
    until(lambda: httpx.get(f"{registry.url}/v2/", auth=basic("otto")).status_code == 401, "otto refused on /v2",
          max(0.1, disabled + 2.5 - time.monotonic()))
    for browser in (ada, olga, otto):
        browser.close()


def test_immutable_tags_set_in_the_namespace_page(
        registry: RegistryProcess, moorage_bin: str, chromium: Any, docker: Docker, images: ImageFactory) -> None:
    for command in (["user", "add", "dev"], ["namespace", "add", "payments"],
                    ["namespace", "grant", "payments", "--user", "dev", "developer"]):
        done = run([moorage_bin, *command, "-c", str(registry.config_path)], input=USERS["dev"] + "\n",
                   check=False, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    ada = Browser(chromium, registry, "ada")
    page = ada.open("/namespaces/payments")
    page.fill("[data-testid=immutable] input[name=patterns]", "v*")
    page.click("button >> text=Save immutable tags")
    assert ada.done() == "Immutable tags saved."
    ada.close()

    first, second = (images.docker_archive(f"e2e/{unique('imm')}:1", layers=[images.layer()]) for _ in range(2))
    for img in (first, second):
        docker.load(img.path)
    docker_login(docker, registry, "dev")
    for tag in ("v1", "latest"):
        docker.tag(first.tag, registry.ref("payments/api", tag))
        docker.push(registry.ref("payments/api", tag))
        docker.tag(second.tag, registry.ref("payments/api", tag))
    overwrite: subprocess.CompletedProcess[str] = docker("push", registry.ref("payments/api", "v1"), check=False)
    assert overwrite.returncode != 0 and re.search(r"tag v1 is immutable", output(overwrite)), output(overwrite)
    docker.push(registry.ref("payments/api", "latest"))  # not matching v*: moves
    digests = {tag: httpx.head(f"{registry.url}/v2/payments/api/manifests/{tag}", auth=basic("dev"),
                               headers={"Accept": ACCEPT})
               .headers.get("Docker-Content-Digest") for tag in ("v1", "latest")}
    assert digests["v1"] and digests["latest"] and digests["v1"] != digests["latest"], digests
