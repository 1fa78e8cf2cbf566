"""Directory users with real clients: `moorage serve` with an htpasswd file and an OpenLDAP slapd that the
test starts (tests/ldapserver.py). docker logs in with directory passwords, a directory group grants push
on payments/, removing the user from the group takes effect within the stated cache TTL, a stopped
directory leaves local users working and gives directory users 503 within 5 s, and LDAPS with a
certificate the registry does not trust is refused. The same holds with token auth (the built-in token
server), where a directory user's access token works with docker too."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth import htpasswd
from tests.auth.e2e_support import assert_refused, auth_port, login, output, write_auth_files
from tests.ldapserver import PEOPLE, SERVICE_DN, SERVICE_PW, Slapd, own_slapd

from .clients import Docker
from .helpers import unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
CACHE_TTL = 3  # seconds: auth.ldap.cachettl of these registries
RULES = {"rules": [
    {"repositories": ["payments/**"], "who": ["team:payments-devs"], "actions": ["pull", "push"]},
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
]}


@pytest.fixture
def slapd() -> Iterator[Slapd]:
    yield from own_slapd()


def ldap(slapd: Slapd, **overrides: Any) -> dict[str, Any]:
    return {"url": slapd.url, "starttls": True, "cacertificate": slapd.ca_file, "binddn": SERVICE_DN,
            "bindpassword": SERVICE_PW, "userbase": PEOPLE, "cachettl": f"{CACHE_TTL}s", "timeout": "2s",
            **overrides}


@pytest.fixture
def registry(start_moorage: ServerFactory, tmp_path: Path, slapd: Slapd) -> RegistryProcess:
    local = tmp_path / "htpasswd"  # one local user; alice, bob and carol are the directory's
    htpasswd.set_password(local, "localdev", "local-pw", cost=4)
    auth = {"htpasswd": {"realm": "moorage-e2e", "path": str(local)}, "ldap": ldap(slapd),
            "access": RULES}
    return start_moorage({"auth": auth}, port=auth_port())


@pytest.fixture
def token_registry(start_moorage: ServerFactory, tmp_path: Path, slapd: Slapd) -> RegistryProcess:
    """Token auth (the built-in token server) over the same chain: localdev in htpasswd, the directory."""
    files = write_auth_files(tmp_path / "auth")
    local = tmp_path / "htpasswd"
    htpasswd.set_password(local, "localdev", "local-pw", cost=4)
    port = auth_port()
    auth = files.token(f"http://127.0.0.1:{port}/auth/token")
    auth["tokenserver"]["htpasswd"] = str(local)
    return start_moorage({"auth": {**auth, "ldap": ldap(slapd), "access": RULES}}, port=port)


def basic(user: str, password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, password)


def refused_within_ttl(docker: Docker, ref: str, since: float) -> None:
    """A push of ``ref`` is refused within the cache TTL (and a margin for docker's own round trips)."""
    while True:
        p = docker("push", ref, check=False)
        if p.returncode != 0:
            assert_refused(p)
            return
        assert time.monotonic() - since < CACHE_TTL + 10, "still allowed after the cache TTL"
        time.sleep(0.5)


def test_directory_user_with_docker_and_the_ui_group_grants_push(
        registry: RegistryProcess, slapd: Slapd, docker: Docker, images: ImageFactory) -> None:
    img = images.docker_archive(f"e2e/{unique('ldap')}:1", layers=[images.layer()])
    docker.load(img.path)
    assert_refused(login(docker, registry.host, "alice", "wrong"))
    ok = login(docker, registry.host, "alice", "alice-secret")
    assert ok.returncode == 0, output(ok)
    team_ref = registry.ref("payments/api", "1.0")
    docker.tag(img.tag, team_ref)
    docker.push(team_ref)

    assert login(docker, registry.host, "carol", "carol-secret").returncode == 0
    docker.tag(img.tag, registry.ref("payments/api", "carol"))
    assert_refused(docker("push", registry.ref("payments/api", "carol"), check=False))  # not in the group

    with httpx.Client(base_url=registry.url) as ui:  # the web UI's login form, as a browser posts it
        page = ui.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
        r = ui.post("/ui/login", data={"username": "alice", "password": "alice-secret", "csrf": token,
                                       "next": "/ui/r/payments/api"}, follow_redirects=True)
        assert r.status_code == 200 and 'data-testid="user">alice<' in r.text and "1.0" in r.text

    assert login(docker, registry.host, "alice", "alice-secret").returncode == 0
    slapd.set_member("payments-devs", "alice", False)
    removed = time.monotonic()
    second = registry.ref("payments/api", "1.1")
    docker.tag(img.tag, second)
    refused_within_ttl(docker, second, removed)


def test_directory_down_local_users_work_directory_users_503(
        registry: RegistryProcess, slapd: Slapd, docker: Docker) -> None:
    assert httpx.get(f"{registry.url}/v2/", auth=basic("bob", "bob-secret")).status_code == 200
    slapd.stop()
    time.sleep(CACHE_TTL + 0.5)  # bob's cached login runs out
    assert login(docker, registry.host, "localdev", "local-pw").returncode == 0
    started = time.monotonic()
    r = httpx.get(f"{registry.url}/v2/", auth=basic("bob", "bob-secret"), timeout=30)
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 5
    failed = login(docker, registry.host, "bob", "bob-secret")
    assert failed.returncode != 0 and ("503" in output(failed) or "unavailable" in output(failed)), output(failed)
    slapd.start()
    assert login(docker, registry.host, "bob", "bob-secret").returncode == 0


def test_ldaps_with_an_untrusted_certificate_is_refused(
        start_moorage: ServerFactory, slapd: Slapd, tmp_path: Path) -> None:
    untrusting = ldap(slapd, url=slapd.ldaps_url, starttls=False)
    del untrusting["cacertificate"]  # the system's CAs: the test CA is not among them
    reg = start_moorage({"auth": {"ldap": untrusting, "access": RULES}}, port=auth_port())
    r = httpx.get(f"{reg.url}/v2/", auth=basic("bob", "bob-secret"), timeout=30)
    assert r.status_code == 503
    assert "certificate verify failed" in reg.log_path.read_text()


def test_directory_users_through_the_token_server(
        token_registry: RegistryProcess, slapd: Slapd, docker: Docker, images: ImageFactory) -> None:
    reg = token_registry
    img = images.docker_archive(f"e2e/{unique('ldaptok')}:1", layers=[images.layer()])
    docker.load(img.path)
    assert_refused(login(docker, reg.host, "alice", "wrong"))
    ok = login(docker, reg.host, "alice", "alice-secret")
    assert ok.returncode == 0, output(ok)
    docker.tag(img.tag, reg.ref("payments/api", "tok"))
    docker.push(reg.ref("payments/api", "tok"))  # the group's grant, through the token server's tokens

    made = httpx.post(f"{reg.url}/api/v1/tokens", auth=basic("alice", "alice-secret"), timeout=30,
                      json={"name": "laptop", "scopes": ["pull"], "repositories": ["payments/**"]})
    assert made.status_code == 201, made.text
    ok = login(docker, reg.host, "alice", made.json()["secret"])  # a directory user's access token
    assert ok.returncode == 0, output(ok)
    docker.rmi(reg.ref("payments/api", "tok"))
    docker("pull", reg.ref("payments/api", "tok"))
    docker.tag(img.tag, reg.ref("payments/api", "tok2"))
    assert_refused(docker("push", reg.ref("payments/api", "tok2"), check=False))  # the token's scope: pull

    assert login(docker, reg.host, "alice", "alice-secret").returncode == 0
    slapd.set_member("payments-devs", "alice", False)
    refused_within_ttl(docker, reg.ref("payments/api", "tok2"), time.monotonic())

    slapd.stop()
    time.sleep(CACHE_TTL + 0.5)  # the cached logins run out
    assert login(docker, reg.host, "localdev", "local-pw").returncode == 0
    started = time.monotonic()
    r = httpx.get(f"{reg.url}/auth/token", params={"service": "moorage-e2e", "scope": "repository:bob/x:pull"},
                  auth=basic("bob", "bob-secret"), timeout=30)
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
    assert time.monotonic() - started < 5
    failed = login(docker, reg.host, "bob", "bob-secret")
    assert failed.returncode != 0 and ("503" in output(failed) or "unavailable" in output(failed)), output(failed)
