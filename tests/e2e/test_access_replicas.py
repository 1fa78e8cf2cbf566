"""Two replicas with ``auth.database`` on one PostgreSQL and one storage root, behind the shipped
nginx config (docs/deploy/s3-replicas/nginx.conf, round-robin): a grant made through replica A is
enforced by replica B within 2 s, a user made on A logs in with docker through nginx and pushes and
pulls (both replicas serve), an immutable ``v*`` tag cannot be moved by docker's push while ``latest``
can, and a revocation made through B refuses the next push on A within 2 s."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.auth.e2e_support import assert_refused, login, output
from tests.deploy.support import (
    DEPLOY_DOCS,
    IP6_HOST,
    Certs,
    Nginx,
    adapt_nginx_site,
    docker_trusts,
    free_port,
    require_ip6_localhost,
)

from .clients import Docker
from .helpers import unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
ADMIN = ("admin", "admin-e2e-pw")
BOB = ("bob", "bob-e2e-pw")


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs.make(tmp_path / "certs")


def push_status(reg: RegistryProcess, repository: str) -> int:
    """What the replica answers bob's start of an upload (202: he may push; 403: he may not)."""
    return httpx.post(f"{reg.url}/v2/{repository}/blobs/uploads/", auth=BOB, timeout=10).status_code


def until_within_2s(reg: RegistryProcess, repository: str, status: int, since: float, what: str) -> None:
    """Polls until the replica answers ``status``; a request sent 2 s after the change must.  Then waits
    out those 2 s: each worker process of each replica follows the database on its own, and docker's
    next requests may reach any of them."""
    while True:
        sent = time.monotonic()
        if (found := push_status(reg, repository)) == status:
            break
        assert found in (202, 403), found
        assert sent - since < 2, f"replica {reg.host} {what} 2 s after the change (still {found})"
        time.sleep(0.05)
    time.sleep(max(0.0, since + 2.0 - time.monotonic()))


def test_grants_and_logins_hold_on_every_replica(start_moorage: ServerFactory, moorage_bin: str, postgres_url: str,
                                                 certs: Certs, docker: Docker, images: ImageFactory,
                                                 tmp_path: Path) -> None:
    require_ip6_localhost()
    config = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "shared")}},
              "database": {"url": postgres_url}, "auth": {"database": {}},
              "http": {"trustedproxies": ["127.0.0.1/32"]}}
    a, b = (start_moorage(config) for _ in range(2))
    done = subprocess.run([moorage_bin, "user", "add", ADMIN[0], "--admin", "-c", str(a.config_path)],
                          input=ADMIN[1] + "\n", text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for path, body in (("users", {"name": BOB[0], "password": BOB[1]}), ("namespaces", {"path": "payments"})):
        r = httpx.post(f"{a.url}/api/v1/{path}", json=body, auth=ADMIN, timeout=30)
        assert r.status_code == 201, r.text
    assert httpx.get(f"{b.url}/v2/", auth=BOB, timeout=10).status_code == 200  # made on A, logs in on B at once
    assert push_status(b, "payments/api") == 403

    r = httpx.put(f"{a.url}/api/v1/namespaces/payments/_members/users/bob", json={"role": "developer"}, auth=ADMIN,
                  timeout=10)
    assert r.status_code == 200, r.text
    until_within_2s(b, "payments/api", 202, time.monotonic(), "does not let bob push")

    port = free_port()
    example = DEPLOY_DOCS / "s3-replicas" / "nginx.conf"
    site = adapt_nginx_site(example, port, {f"server moorage-{i + 1}:5000 ": f"server {reg.host} "
                                            for i, reg in enumerate((a, b))}, certs)
    nginx = Nginx(tmp_path / "nginx", site).start(port)
    try:
        host = f"{IP6_HOST}:{port}"
        img = images.docker_archive(f"e2e/{unique('acl')}:1", layers=[images.layer(), images.layer()])
        docker.load(img.path)
        ref = f"{host}/payments/api:1.0"
        docker.tag(img.tag, ref)
        with docker_trusts(host, certs):
            assert login(docker, host, *BOB).returncode == 0
            digest, _ = docker.push(ref)
            docker.rmi(ref)
            docker.pull(ref)
            assert docker.repo_digest(ref) == digest
            assert {a.host, b.host} <= nginx.upstreams(), nginx.upstreams()

            # an immutable v* tag: docker cannot move it (a clear error), latest moves freely
            r = httpx.patch(f"{a.url}/api/v1/namespaces/payments", json={"immutable_tags": ["v*"]}, auth=ADMIN,
                            timeout=10)
            assert r.status_code == 200, r.text
            protected = time.monotonic()
            other = images.docker_archive(f"e2e/{unique('acl')}:2", layers=[images.layer()])
            docker.load(other.path)
            for local, tag in ((img.tag, "v1"), (img.tag, "latest"), (other.tag, "latest")):
                docker.tag(local, f"{host}/payments/api:{tag}")
                docker.push(f"{host}/payments/api:{tag}")
            time.sleep(max(0.0, protected + 2.0 - time.monotonic()))  # every worker of both replicas knows v*
            docker.tag(other.tag, f"{host}/payments/api:v1")
            moved = docker("push", f"{host}/payments/api:v1", check=False)
            assert moved.returncode != 0 and "tag v1 is immutable" in output(moved), output(moved)

            r = httpx.delete(f"{b.url}/api/v1/namespaces/payments/_members/users/bob", auth=ADMIN, timeout=10)
            assert r.status_code == 204, r.text
            until_within_2s(a, "payments/api", 403, time.monotonic(), "still lets bob push")
            docker.tag(img.tag, f"{host}/payments/api:2.0")
            assert_refused(docker("push", f"{host}/payments/api:2.0", check=False))
            docker("logout", host)
    finally:
        nginx.stop()
