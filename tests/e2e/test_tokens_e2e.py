"""Access tokens and robots with real clients against `moorage serve` (htpasswd users, the SQLite database
beside the data): a `pull` token scoped `payments/**` pulls there with docker, skopeo, podman and oras, and
is refused a push (403 DENIED) and any other namespace; a `pull,push` robot pushes from a CI script; a
revocation made through one replica stops the token on a second replica within 2 s (on SQLite and on
PostgreSQL); an expired token
fails with a message that says it expired."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from auth import htpasswd
from auth.manage import Management
from auth.terms import OPERATOR
from storage.database import Database
from tests.auth.e2e_support import assert_refused, auth_port, login, output, write_auth_files

from .clients import Docker, Podman, Skopeo
from .helpers import run, unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory
from .test_notifications import Receiver, notifying, push_image, receiver, wait_for  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e
BOB = ("bob", "bob-e2e-pw")
RULES = {"rules": [
    {"repositories": ["payments/**"], "who": ["bob"], "actions": ["pull", "push"]},
    {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
]}


@pytest.fixture
def registry(start_moorage: ServerFactory, tmp_path: Path) -> RegistryProcess:
    path = tmp_path / "htpasswd"
    htpasswd.set_password(path, "bob", BOB[1], cost=4)
    return start_moorage({"auth": {"htpasswd": {"realm": "moorage-e2e", "path": str(path)}, "access": RULES}},
                         port=auth_port())


def create_token(reg: RegistryProcess, auth: tuple[str, str], **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{reg.url}/api/v1/tokens", json={"name": unique("t"), "scopes": ["pull"], **body}, auth=auth,
                   timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def seeded(registry: RegistryProcess, docker: Docker, images: ImageFactory) -> tuple[RegistryProcess, str]:
    """bob (with his password) pushed payments/api:1 and bob/private:1; returns (registry, local image)."""
    img = images.docker_archive(f"e2e/{unique('tok')}:1", layers=[images.layer()])
    docker.load(img.path)
    assert login(docker, registry.host, *BOB).returncode == 0
    for ref in (registry.ref("payments/api", "1"), registry.ref("bob/private", "1")):
        docker.tag(img.tag, ref)
        docker.push(ref)
        docker.rmi(ref)
    docker("logout", registry.host)
    return registry, img.tag


def test_pull_token_with_docker_skopeo_podman_and_oras(
        seeded: tuple[RegistryProcess, str], docker: Docker, skopeo: Skopeo, podman: Podman, oras: ModuleType,
        tmp_path: Path) -> None:
    reg, local = seeded
    secret = create_token(reg, BOB, repositories=["payments/**"], expires="2099-01-01T00:00:00Z")["secret"]
    token = f"bob:{secret}"

    ok = login(docker, reg.host, "bob", secret)  # docker login -u bob --password-stdin
    assert ok.returncode == 0, output(ok)
    docker.pull(reg.ref("payments/api", "1"))
    docker.tag(local, reg.ref("payments/api", "2"))
    refused = docker("push", reg.ref("payments/api", "2"), check=False)
    assert_refused(refused)
    assert "denied" in output(refused)
    assert_refused(docker("pull", reg.ref("bob/private", "1"), check=False))  # bob may; the token may not

    src = f"docker://{reg.ref('payments/api', '1')}"
    assert skopeo("inspect", "--tls-verify=false", "--creds", token, src).returncode == 0
    assert_refused(skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", token,
                          "--dest-creds", token, src, f"docker://{reg.ref('payments/api', 'sk')}", check=False))
    assert_refused(skopeo("inspect", "--tls-verify=false", "--creds", token,
                          f"docker://{reg.ref('bob/private', '1')}", check=False))

    podman_login = [*podman.base, "login", "--tls-verify=false", "-u", "bob", "--password-stdin", reg.host]
    run(podman_login, env=podman.env, input=secret + "\n")
    podman("pull", "--tls-verify=false", reg.ref("payments/api", "1"))
    podman("tag", reg.ref("payments/api", "1"), reg.ref("payments/api", "pod"))
    assert_refused(podman("push", "--tls-verify=false", reg.ref("payments/api", "pod"), check=False))
    assert_refused(podman("pull", "--tls-verify=false", reg.ref("bob/private", "1"), check=False))

    artifact = tmp_path / "notes.txt"
    artifact.write_text("release notes\n")
    pusher = oras.connect(reg.host, user="bob", password=BOB[1])
    assert oras.push(pusher, reg.ref("payments/notes", "1"), [artifact]).status == 201
    reader = oras.connect(reg.host, user="bob", password=secret)
    oras.pull(reader, reg.ref("payments/notes", "1"), tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "release notes\n"
    with pytest.raises(ValueError):  # oras-py raises on the 403
        oras.push(reader, reg.ref("payments/notes", "2"), [artifact])
    r = httpx.put(f"{reg.url}/v2/payments/notes/manifests/x", auth=("bob", secret), content=b"{}",
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"


def test_robot_pushes_from_a_ci_script(seeded: tuple[RegistryProcess, str], docker: Docker) -> None:
    reg, local = seeded
    db = Database(f"sqlite:///{reg.root / 'moorage.db'}")  # as `moorage namespace` would, on the same database

    async def owner() -> None:
        manage = Management(db)
        manage.cost = 4
        await manage.create_user(OPERATOR, "bob", BOB[1])
        await manage.create_namespace(OPERATOR, "payments")
        await manage.set_member(OPERATOR, "payments", "user", "bob", "owner")
        await db.close()

    asyncio.run(owner())
    r = httpx.post(f"{reg.url}/api/v1/namespaces/payments/robots", auth=BOB, timeout=30,
                   json={"name": "ci", "actions": ["pull", "push"], "description": "release pipeline"})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{reg.url}/api/v1/robots/robot+payments+ci/tokens", auth=BOB, timeout=30,
                   json={"name": "pipeline", "scopes": ["pull", "push"]})
    assert r.status_code == 201, r.text
    script = (
        'set -e\n'
        'printf %s "$REGISTRY_TOKEN" | docker login "$REGISTRY" -u "robot+payments+ci" --password-stdin\n'
        'docker tag "$IMAGE" "$REGISTRY/payments/api:ci"\n'
        'docker push "$REGISTRY/payments/api:ci"\n'
    )
    env = {**docker.env, "REGISTRY": reg.host, "REGISTRY_TOKEN": r.json()["secret"], "IMAGE": local}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    tags = httpx.get(f"{reg.url}/v2/payments/api/tags/list", auth=BOB, timeout=30).json()["tags"]
    assert "ci" in tags
    docker.tag(local, reg.ref("bob/private", "ci"))
    assert_refused(docker("push", reg.ref("bob/private", "ci"), check=False))  # outside its namespace


@pytest.fixture(params=["sqlite", "postgresql"])
def replicas(request: pytest.FixtureRequest, start_moorage: ServerFactory, tmp_path: Path
             ) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """Two replicas on one storage root and one database: a SQLite file (the version counter they poll)
    or a PostgreSQL database of the test's own (LISTEN/NOTIFY), as replicas on several hosts use."""
    files = write_auth_files(tmp_path / "auth")
    root = tmp_path / "shared"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'moorage.db'}"
    config = {"storage": {"filesystem": {"rootdirectory": str(root)}}, "database": {"url": url},
              "auth": {"htpasswd": {"path": str(files.htpasswd)}, "access": RULES}}
    yield start_moorage(config, port=auth_port()), start_moorage(config, port=auth_port())


def test_revocation_on_one_replica_stops_the_token_on_the_other_within_2s(replicas) -> None:
    a, b = replicas
    made = create_token(a, ("alice", "alice-e2e-pw"))
    token = ("alice", made["secret"])
    assert httpx.get(f"{b.url}/v2/", auth=token, timeout=10).status_code == 200
    r = httpx.delete(f"{a.url}/api/v1/tokens/{made['id']}", auth=("alice", "alice-e2e-pw"), timeout=10)
    assert r.status_code == 204
    revoked = time.monotonic()
    while (status := httpx.get(f"{b.url}/v2/", auth=token, timeout=10).status_code) == 200:
        assert time.monotonic() - revoked < 2, "replica B still accepts the token 2 s after its revocation"
        time.sleep(0.05)
    assert status == 401


def test_expired_token_says_so(registry: RegistryProcess, docker: Docker, skopeo: Skopeo) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    made = create_token(registry, BOB, expires=soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1)
    r = httpx.get(f"{registry.url}/v2/", auth=("bob", made["secret"]), timeout=10)
    assert r.status_code == 401 and "expired" in r.json()["errors"][0]["message"]
    # with Basic auth docker and skopeo show only the status; the answer's body says why (as curl shows)
    failed = skopeo("login", "--tls-verify=false", "-u", "bob", "-p", made["secret"], registry.host, check=False)
    assert failed.returncode != 0 and "invalid username/password" in output(failed)
    assert login(docker, registry.host, "bob", made["secret"]).returncode != 0


def test_docker_with_the_token_server_and_a_token(start_moorage: ServerFactory, tmp_path: Path, docker: Docker,
                                                   images: ImageFactory) -> None:
    files = write_auth_files(tmp_path / "auth")
    port = auth_port()
    reg = start_moorage({"auth": {**files.token(f"http://127.0.0.1:{port}/auth/token"), "access": RULES}}, port=port)
    alice = ("alice", "alice-e2e-pw")
    secret = create_token(reg, alice, scopes=["pull", "push"], repositories=["alice/**"])["secret"]
    img = images.docker_archive(f"e2e/{unique('tok')}:1", layers=[images.layer()])
    docker.load(img.path)
    ok = login(docker, reg.host, "alice", secret)
    assert ok.returncode == 0, output(ok)
    docker.tag(img.tag, reg.ref("alice/app", "1"))
    docker.push(reg.ref("alice/app", "1"))
    docker.tag(img.tag, reg.ref("alice-other/app", "1"))
    assert_refused(docker("push", reg.ref("alice-other/app", "1"), check=False))


def test_expired_token_with_the_token_server_docker_says_it_expired(start_moorage: ServerFactory, tmp_path: Path, docker: Docker) -> None:
    files = write_auth_files(tmp_path / "auth")
    port = auth_port()
    reg = start_moorage({"auth": {**files.token(f"http://127.0.0.1:{port}/auth/token"), "access": RULES}}, port=port)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    made = create_token(reg, ("alice", "alice-e2e-pw"), expires=soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1)
    failed = login(docker, reg.host, "alice", made["secret"])  # the token server's message reaches the user
    assert failed.returncode != 0 and "expired at" in output(failed), output(failed)


def test_secrets_never_reach_logs_metrics_events_or_the_audit_trail(
        start_moorage: ServerFactory, tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    path = tmp_path / "htpasswd"
    htpasswd.set_password(path, "bob", BOB[1], cost=4)
    receiver.start()
    audit = tmp_path / "audit.jsonl"
    config = {"auth": {"htpasswd": {"path": str(path)}, "access": {**RULES, "admins": ["bob"]}},
              "log": {"level": "debug", "audit": {"path": str(audit)}}, "http": {"metrics": {"enabled": True}},
              **notifying(receiver)}
    reg = start_moorage(config, port=auth_port())
    made = create_token(reg, BOB, scopes=["pull", "push"], repositories=["payments/**"])
    secret = made["secret"]
    with httpx.Client(base_url=reg.url, auth=("bob", secret), timeout=30,
                      headers={"User-Agent": "notifications-e2e/1"}) as http:
        push_image(http, "payments/api", "1", b"layer pushed with a token")
        assert http.get("/v2/payments/api/manifests/1").status_code == 200
        assert http.put("/v2/bob/app/manifests/1", content=b"{}").status_code == 403  # refused: audited
    assert httpx.get(f"{reg.url}/v2/", auth=("bob", secret[:-3] + "abc"), timeout=10).status_code == 401
    httpx.delete(f"{reg.url}/api/v1/tokens/{made['id']}", auth=BOB, timeout=10)
    wait_for(lambda: any(e["action"] == "push" for e in receiver.events), "the push events")
    metrics = httpx.get(f"{reg.url}/metrics", auth=BOB, timeout=10).text
    places = {"events": json.dumps(receiver.envelopes), "metrics": metrics, "audit trail": audit.read_text(),
              "server log": reg.log_path.read_text()}
    assert "refused" in places["audit trail"] and '"actor": {"name": "bob"}' in places["events"]
    random_part = secret.split("_", 3)[3]  # moorage_pat_<id>_<43 random characters, which may hold "_">
    assert len(random_part) == 43
    for where, text in places.items():
        for fragment in (secret, random_part):
            assert fragment not in text, f"the token's secret is in the {where}"
