"""docker, skopeo, podman, ctr and oras against `moorage serve` with htpasswd and with token auth
(built-in token server), over plain HTTP on loopback (test_auth_tls.py does TLS).

Every scenario runs in both modes: login with a wrong and a right password, push into the caller's
own namespace, a push the rules deny (the client must show a clean denied/unauthorized message),
anonymous pull where the rules allow it and refusal where they do not, logout.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.auth.e2e_support import (
    ALICE,
    BOB,
    SERVICE,
    USERS,
    assert_refused,
    auth_port,
    login,
    output,
    write_auth_files,
)

from .clients import Ctr, Docker, Podman, Skopeo
from .helpers import run, unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
MODES = ["htpasswd", "token"]


@pytest.fixture(params=MODES)
def secured(request: pytest.FixtureRequest, start_moorage: ServerFactory, tmp_path: Path) -> RegistryProcess:
    files = write_auth_files(tmp_path / "auth")
    port = auth_port()
    if request.param == "htpasswd":
        auth = files.basic()
    else:
        auth = files.token(f"http://127.0.0.1:{port}/auth/token")
    return start_moorage({"auth": auth}, port=port)


def mode(registry: RegistryProcess) -> str:
    return "token" if "token" in registry.config["auth"] else "htpasswd"


def test_docker_login_push_pull_logout(secured: RegistryProcess, docker: Docker, images: ImageFactory) -> None:
    reg = secured
    img = images.docker_archive(f"e2e/{unique('auth')}:1", layers=[images.layer()])
    docker.load(img.path)

    wrong = login(docker, reg.host, "alice", "not-the-password")
    assert_refused(wrong)
    ok = login(docker, reg.host, "alice", USERS["alice"])
    assert ok.returncode == 0, output(ok)
    stored = json.loads((docker.config_dir / "config.json").read_text())["auths"][reg.host]
    if mode(reg) == "token":  # docker keeps the refresh token as an identity token, not the password
        assert stored["identitytoken"] and USERS["alice"] not in json.dumps(stored)
    else:
        assert base64.b64decode(stored["auth"]).decode() == ALICE

    own, public, foreign = reg.ref("alice/app", "1"), reg.ref("public/base", "1"), reg.ref("bob/app", "1")
    for ref in (own, public, foreign):
        docker.tag(img.tag, ref)
    digest, _ = docker.push(own)
    docker.push(public)
    assert_refused(docker("push", foreign, check=False))

    assert docker("logout", reg.host).returncode == 0
    docker.rmi(own, public)
    assert_refused(docker("pull", own, check=False))
    if mode(reg) == "token":  # docker stops at a Basic challenge without credentials: no anonymous pull
        docker.pull(public)  # anonymous token, pull allowed by the rules
        assert docker.repo_digest(public) == digest

    assert login(docker, reg.host, "bob", USERS["bob"]).returncode == 0
    assert_refused(docker("pull", own, check=False))  # bob may not read alice's namespace
    docker.tag(img.tag, foreign)
    docker.push(foreign)


def test_skopeo_creds_and_login(secured: RegistryProcess, skopeo: Skopeo, images: ImageFactory) -> None:
    reg = secured
    img = images.docker_archive(f"e2e/{unique('auth')}:1", layers=[images.layer()])
    src = f"docker-archive:{img.path}"
    own, public = f"docker://{reg.ref('alice/sk', '1')}", f"docker://{reg.ref('public/sk', '1')}"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", ALICE, src, own)
    assert_refused(
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            BOB,
            src,
            f"docker://{reg.ref('alice/sk', '2')}",
            check=False,
        )
    )
    assert_refused(skopeo("inspect", "--tls-verify=false", own, check=False))
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", ALICE, src, public)
    assert skopeo.inspect(public)["Name"].endswith("public/sk")  # anonymous, as the rules allow

    login = [skopeo.binary, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", reg.host]
    assert_refused(run(login, env=skopeo.env, input="wrong\n", check=False))
    run(login, env=skopeo.env, input=USERS["alice"] + "\n")
    assert skopeo.inspect(own)["Name"].endswith("alice/sk")
    skopeo("logout", reg.host)
    assert_refused(skopeo("inspect", "--tls-verify=false", own, check=False))


def test_ctr_user(secured: RegistryProcess, ctr: Ctr, images: ImageFactory) -> None:
    reg = secured
    local = f"docker.io/e2e/{unique('ctr')}:1"
    img = images.docker_archive(local, layers=[images.layer()])
    ctr("images", "import", "--no-unpack", str(img.path))
    own, foreign = reg.ref("alice/ctr", "1"), reg.ref("bob/ctr", "1")
    ctr("images", "tag", local, own)
    ctr("images", "tag", local, foreign)
    ctr("images", "push", "--plain-http", "--user", ALICE, own)
    assert_refused(ctr("images", "push", "--plain-http", "--user", ALICE, foreign, check=False))
    public = reg.ref("public/ctr", "1")
    ctr("images", "tag", local, public)
    ctr("images", "push", "--plain-http", "--user", ALICE, public)
    ctr("images", "rm", own, public)
    assert_refused(ctr("images", "pull", "--plain-http", own, check=False))
    assert_refused(ctr("images", "pull", "--plain-http", "--user", BOB, own, check=False))
    ctr("images", "pull", "--plain-http", "--user", ALICE, own)
    ctr("images", "pull", "--plain-http", public)  # anonymous, as the rules allow


def test_oras(secured: RegistryProcess, oras: ModuleType, tmp_path: Path) -> None:
    """oras-py's basic backend (htpasswd) and its token backend (token auth)."""
    reg = secured
    artifact = tmp_path / "artifact.txt"
    artifact.write_text("hello from oras\n")
    backend = "token" if mode(reg) == "token" else "basic"
    alice = oras.connect(reg.host, user="alice", password=USERS["alice"], auth_backend=backend)
    if backend == "token":
        # oras-py keeps the token of its first challenge (pull) for the upload and fetches a new one only
        # after a 403, so it cannot push through a Distribution-style token server: give it a push token.
        r = httpx.get(f"{reg.url}/auth/token", auth=("alice", USERS["alice"]),
                      params={"service": SERVICE, "scope": "repository:alice/art:pull,push"})
        alice.auth.set_token_auth(r.json()["token"])
    result = oras.push(alice, reg.ref("alice/art", "1"), [artifact], chunked=True)
    assert result.status == 201
    out = tmp_path / "out"
    reader = oras.connect(reg.host, user="alice", password=USERS["alice"], auth_backend=backend)
    oras.pull(reader, reg.ref("alice/art", "1"), out)
    assert (out / "artifact.txt").read_text() == "hello from oras\n"
    bob = oras.connect(reg.host, user="bob", password=USERS["bob"], auth_backend=backend)
    with pytest.raises(ValueError):
        oras.pull(bob, reg.ref("alice/art", "1"), tmp_path / "bob")
    assert not (tmp_path / "bob" / "artifact.txt").exists()


def test_podman_login_push_pull(secured: RegistryProcess, podman: Podman, images: ImageFactory) -> None:
    reg = secured
    img = images.docker_archive(f"e2e/{unique('auth')}:1", layers=[images.layer()])
    podman("load", "-i", str(img.path))
    own, foreign = reg.ref("alice/pod", "1"), reg.ref("bob/pod", "1")
    podman("tag", img.tag, own)
    podman("tag", img.tag, foreign)
    assert_refused(podman("push", "--tls-verify=false", own, check=False))  # not logged in
    login_cmd = [*podman.base, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", reg.host]
    assert_refused(run(login_cmd, env=podman.env, input="wrong\n", check=False))
    run(login_cmd, env=podman.env, input=USERS["alice"] + "\n")
    podman("push", "--tls-verify=false", own)
    assert_refused(podman("push", "--tls-verify=false", foreign, check=False))
    podman("rmi", own)
    podman("pull", "--tls-verify=false", own)
    podman("logout", reg.host)
    podman("rmi", own)
    assert_refused(podman("pull", "--tls-verify=false", own, check=False))
