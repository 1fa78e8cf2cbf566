"""Pull-through mirror with real clients: docker, skopeo and ctr pull through `moorage serve`.

Upstreams on loopback: Distribution 2.8.2 (plain and with htpasswd) and a second Moorage. Upstream
requests are counted from the upstream's access log. Ports come from 15500-15599.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from .clients import Ctr, Docker, Skopeo
from .conftest import ServerFactory
from .helpers import free_port_in, require_binary, run, unique
from .images import MANIFEST_ACCEPT, PLATFORM_LABEL, ImageFactory
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e
MIRROR_PORTS = range(15500, 15600)
ACCESS_RE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (/v2/\S*) HTTP')


# single-flight downloads and upstream tokens are per process (docs/mirror.md): the tests that count
# upstream requests run one worker, as one process per replica would
ONE_PROCESS = {"http": {"workers": 1}}


def start_server(
    factory: ServerFactory, config: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None
) -> RegistryProcess:
    """Start on a free port of our range; another run may take it before the server binds: retry."""
    for attempt in range(5):
        port = free_port_in(MIRROR_PORTS)
        try:
            return factory(config(port) if callable(config) else config, port=port)
        except RuntimeError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def upstream_requests(server: RegistryProcess) -> list[tuple[str, str]]:
    """(method, path) of every /v2 request in the server's access log."""
    return [(m.group(1), m.group(2)) for m in ACCESS_RE.finditer(server.log_path.read_text(errors="replace"))]


def count(server: RegistryProcess, method: str, contains: str) -> int:
    return sum(1 for m, p in upstream_requests(server) if m == method and contains in p)


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def htpasswd(path: Path, user: str, password: str) -> Path:
    path.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    return path


@pytest.fixture
def distribution_upstream(start_distribution: ServerFactory, tmp_path: Path) -> RegistryProcess:
    """Distribution 2.8.2 with htpasswd auth (alice / s3cret)."""
    auth = {"htpasswd": {"realm": "e2e", "path": str(htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))}}
    return start_server(start_distribution, {"auth": auth})


def test_docker_pull_through_mirror_of_distribution_with_htpasswd(
    distribution_upstream: RegistryProcess,
    start_moorage: ServerFactory,
    skopeo: Skopeo,
    docker: Docker,
    images: ImageFactory,
) -> None:
    """Distribution's proxy keys; pull by tag and digest; warm pulls and pulls with the upstream down."""
    up = distribution_upstream
    repo = f"e2e/{unique('app')}"
    img = images.docker_archive(f"{repo}:v1")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(repo, 'v1')}", "--dest-creds", "alice:s3cret")
    mirror = start_server(  # one worker: downloads are shared between the requests of one process
        start_moorage, {"proxy": {"remoteurl": up.url, "username": "alice", "password": "s3cret", "ttl": "1h"},
                        **ONE_PROCESS}
    )
    ref = mirror.ref(repo, "v1")
    docker.pull(ref)
    digest = docker.repo_digest(ref)
    assert docker.inspect(ref)["Id"] == img.image_id
    blob_gets = 1 + len(img.layers)
    wait_for(lambda: count(up, "GET", "/blobs/") >= blob_gets)  # the access log is written after the body
    assert count(up, "GET", "/blobs/") == blob_gets, upstream_requests(up)

    docker.rmi(ref)
    docker.pull(ref)  # warm: every blob from the mirror's storage
    docker.rmi(ref)
    docker.pull(mirror.ref(repo, digest))
    assert count(up, "GET", "/blobs/") == blob_gets

    up.stop()
    docker.rmi(ref, mirror.ref(repo, digest))
    docker.pull(ref)
    assert docker.inspect(ref)["Id"] == img.image_id
    log = mirror.log_tail(400)
    assert re.search(rf"mirror manifest {repo}@v1 hit", log), log
    assert re.search(rf"mirror blob {repo}@sha256:\w+ miss", log), log


def test_ctr_pulls_through_hosts_toml_mirror_with_ns(
    start_moorage: ServerFactory, skopeo: Skopeo, ctr: Ctr, images: ImageFactory, tmp_path: Path
) -> None:
    """containerd sends ?ns=<upstream host>: the mirror maps it to the upstream below its prefix."""
    up = start_server(start_moorage)
    repo = f"e2e/{unique('ctr')}"
    img = images.docker_archive(f"{repo}:v1")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(repo, 'v1')}")
    mirror = start_server(start_moorage, {"proxy": {"upstreams": [{"prefix": "up", "url": up.url}]}})
    hosts = tmp_path / "hosts"
    (hosts / up.host).mkdir(parents=True)
    (hosts / up.host / "hosts.toml").write_text(
        f'server = "{up.url}"\n\n[host."{mirror.url}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    ref = up.ref(repo, "v1")
    ctr("images", "pull", "--hosts-dir", str(hosts), ref)
    assert "complete" in ctr("images", "check").stdout
    log = mirror.log_tail(400)
    assert f"mirror manifest up/{repo}@v1 miss" in log, log
    assert f"/v2/{repo}/manifests/v1?ns={up.host.replace(':', '%3A')} HTTP" in log, log

    up.stop()  # the mirror alone must now serve the pull (ctr falls back to `server` otherwise)
    ctr.remove_all()
    ctr("images", "pull", "--hosts-dir", str(hosts), ref)
    assert "complete" in ctr("images", "check").stdout


def test_docker_pulls_multi_arch_through_mirror_of_moorage(
    start_moorage: ServerFactory, skopeo: Skopeo, docker: Docker, images: ImageFactory
) -> None:
    up = start_server(start_moorage)
    repo = f"e2e/{unique('multi')}"
    index = images.oci_index(platforms=("linux/amd64", "linux/arm64"))
    skopeo.copy(index.ref, f"docker://{up.ref(repo, 'v1')}", "--all", "--preserve-digests")
    mirror = start_server(start_moorage, {"proxy": {"upstreams": [{"prefix": "hub", "url": up.url}]}})
    ref = mirror.ref(f"hub/{repo}", "v1")
    for platform, arch in (("linux/arm64", "arm64"), ("linux/amd64", "amd64")):
        docker.rmi(ref)
        docker.pull(ref, platform=platform)
        info = docker.inspect(ref)
        assert info["Architecture"] == arch and info["Config"]["Labels"][PLATFORM_LABEL] == platform
        assert info["Id"] == index.configs[platform]
    docker.rmi(ref)  # else docker refuses to give the same image a second (digest) reference
    by_digest = mirror.ref(f"hub/{repo}", index.digest)
    docker.pull(by_digest, platform="linux/arm64")
    assert docker.repo_digest(by_digest) == index.digest
    # pushing into the mirrored namespace is refused with a clear error
    docker.tag(by_digest, mirror.ref(f"hub/{repo}", "mine"))
    p = docker("push", mirror.ref(f"hub/{repo}", "mine"), check=False)
    assert p.returncode != 0 and "read-only mirror" in p.stdout + p.stderr, p.stdout + p.stderr


def test_ten_concurrent_cold_pulls_fetch_each_blob_once(
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    skopeo: Skopeo,
    images: ImageFactory,
    tmp_path: Path,
) -> None:
    up = start_server(start_distribution)
    repo = f"e2e/{unique('cold')}"
    img = images.docker_archive(f"{repo}:v1", layers=[images.random_layer(20 << 20), images.layer()])
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(repo, 'v1')}")
    mirror = start_server(start_moorage, {"proxy": {"upstreams": [{"prefix": "d", "url": up.url}]}, **ONE_PROCESS})
    before = upstream_requests(up)

    def pull(i: int) -> str:
        return skopeo.copy(f"docker://{mirror.ref(f'd/{repo}', 'v1')}", f"dir:{tmp_path / f'pull-{i}'}")

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(pull, range(10)))
    after = upstream_requests(up)[len(before) :]
    blob_gets = [p for m, p in after if m == "GET" and "/blobs/" in p]
    assert len(blob_gets) == len(set(blob_gets)) == 1 + len(img.layers), after
    assert sum(1 for m, p in after if m == "GET" and "/manifests/" in p) == 1, after
    for i in range(1, 10):
        assert sorted(p.name for p in (tmp_path / f"pull-{i}").iterdir()) == sorted(
            p.name for p in (tmp_path / "pull-0").iterdir()
        )


def test_ttl_expiry_revalidates_with_one_head_and_shows_moved_tag(
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    skopeo: Skopeo,
    images: ImageFactory,
) -> None:
    up = start_server(start_distribution)
    repo = f"e2e/{unique('ttl')}"
    first = images.docker_archive(f"{repo}:v1")
    skopeo.copy(f"docker-archive:{first.path}", f"docker://{up.ref(repo, 'v1')}")
    mirror = start_server(start_moorage, {"proxy": {"remoteurl": up.url, "ttl": "2s"}})
    path = f"/v2/{repo}/manifests/v1"
    with mirror.http() as c:
        old = c.get(path, headers={"Accept": MANIFEST_ACCEPT}).headers["docker-content-digest"]
        second = images.docker_archive(f"{repo}:v1")
        skopeo.copy(f"docker-archive:{second.path}", f"docker://{up.ref(repo, 'v1')}")
        n = len(upstream_requests(up))
        assert c.get(path, headers={"Accept": MANIFEST_ACCEPT}).headers["docker-content-digest"] == old
        assert len(upstream_requests(up)) == n  # within the TTL: not a single upstream request
        time.sleep(2.1)
        new = c.get(path, headers={"Accept": MANIFEST_ACCEPT}).headers["docker-content-digest"]
        assert new != old
        assert upstream_requests(up)[n:] == [("HEAD", path), ("GET", path)]
        time.sleep(2.1)
        n = len(upstream_requests(up))
        assert c.get(path, headers={"Accept": MANIFEST_ACCEPT}).headers["docker-content-digest"] == new
        wait_for(lambda: len(upstream_requests(up)) > n)
        assert upstream_requests(up)[n:] == [("HEAD", path)]  # unchanged: one revalidating HEAD


def test_cold_and_warm_pull_of_200mb_image(
    start_distribution: ServerFactory,
    start_moorage: ServerFactory,
    skopeo: Skopeo,
    docker: Docker,
    images: ImageFactory,
) -> None:
    """Timing figures for the report: a 200 MB incompressible layer through the mirror, cold then warm."""
    up = start_server(start_distribution)
    repo = f"e2e/{unique('big')}"
    img = images.docker_archive(f"{repo}:v1", layers=[images.random_layer(200 << 20)])
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(repo, 'v1')}")
    mirror = start_server(start_moorage, {"proxy": {"remoteurl": up.url}})
    ref = mirror.ref(repo, "v1")
    t0 = time.monotonic()
    docker.pull(ref)
    cold = time.monotonic() - t0
    docker.rmi(ref)
    t0 = time.monotonic()
    docker.pull(ref)
    warm = time.monotonic() - t0
    direct_ref = up.ref(repo, "v1")
    docker.rmi(ref)
    t0 = time.monotonic()
    docker.pull(direct_ref)
    direct = time.monotonic() - t0
    gets = count(up, "GET", "/blobs/")
    print(
        f"\n200MB image: cold pull via mirror {cold:.2f}s, warm {warm:.2f}s, direct from upstream "
        f"{direct:.2f}s; upstream blob GETs {gets} (incl. the direct pull)"
    )
    assert gets == 2 * (1 + len(img.layers))


@contextmanager
def private_dockerd(docker_bin: str, config_dir: Path, mirror_url: str) -> Iterator[Docker]:
    """A second docker daemon of our own (own data root, socket, containerd namespace) with
    `--registry-mirror`, so the shared daemon's config is never touched."""
    dockerd = require_binary("dockerd", "apt-get install docker.io")
    base = Path(tempfile.mkdtemp(prefix="mmd-", dir="/tmp"))  # short: socket paths are limited
    sock = base / "docker.sock"
    (base / "daemon.json").write_text("{}")
    ns = base.name
    cmd = [dockerd, "--containerd=/run/containerd/containerd.sock", "--iptables=false", "--ip6tables=false",
           "--ip-masq=false", "--bridge=none", f"--data-root={base / 'data'}", f"--exec-root={base / 'exec'}",
           f"--pidfile={base / 'docker.pid'}", f"--host=unix://{sock}", f"--containerd-namespace={ns}",
           f"--containerd-plugins-namespace={ns}-plugins", f"--registry-mirror={mirror_url}",
           f"--config-file={base / 'daemon.json'}"]
    with open(base / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = Docker(docker_bin, config_dir)
    client.env["DOCKER_HOST"] = f"unix://{sock}"
    try:
        wait_for(lambda: run([docker_bin, "-H", f"unix://{sock}", "info"], check=False, timeout=10).returncode == 0,
                 timeout=60)
        yield client
    finally:
        client.cleanup()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        run(["ctr", "namespaces", "rm", ns], check=False, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_docker_daemon_registry_mirrors(
    start_moorage: ServerFactory, skopeo: Skopeo, images: ImageFactory, docker_bin: str, docker_config: Path
) -> None:
    """daemon.json `registry-mirrors`: `docker pull NAME` asks the mirror for docker.io's library/NAME."""
    up = start_server(start_moorage)
    name = unique("hub")
    img = images.docker_archive(f"library/{name}:v1")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(f'library/{name}', 'v1')}")
    mirror = start_server(start_moorage, {"proxy": {"remoteurl": up.url, "ttl": "1h"}})
    with private_dockerd(docker_bin, docker_config, mirror.url) as docker:
        docker.pull(f"{name}:v1")  # docker.io/library/NAME:v1: no internet here, only the mirror can answer
        assert docker.inspect(f"{name}:v1")["Id"] == img.image_id
    assert f"mirror manifest library/{name}@v1 miss" in mirror.log_tail(400)


def test_pull_through_mirror_of_distribution_behind_moorage_token_server(
    start_moorage: ServerFactory,
    start_distribution: ServerFactory,
    skopeo: Skopeo,
    docker: Docker,
    images: ImageFactory,
    tmp_path: Path,
) -> None:
    """Docker token auth upstream: the mirror follows the challenge, gets one token per scope, reuses it."""
    from tests.auth.e2e_support import ALICE, ISSUER, SERVICE, USERS, write_auth_files

    files = write_auth_files(tmp_path / "auth")
    tokens = start_server(start_moorage, lambda port: {"auth": files.token(f"http://127.0.0.1:{port}/auth/token")})
    realm = f"{tokens.url}/auth/token"  # Moorage as the token server
    token = {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(files.cert)}
    up = start_server(start_distribution, {"auth": {"token": token}})
    repo = f"alice/{unique('tok')}"
    img = images.docker_archive(f"{repo}:v1")
    skopeo.copy(f"docker-archive:{img.path}", f"docker://{up.ref(repo, 'v1')}", "--dest-creds", ALICE)
    mirror = start_server(  # one worker: tokens are cached per process
        start_moorage, {"proxy": {"remoteurl": up.url, "username": "alice", "password": USERS["alice"]}, **ONE_PROCESS}
    )
    docker.pull(mirror.ref(repo, "v1"))
    assert docker.inspect(mirror.ref(repo, "v1"))["Id"] == img.image_id
    log = mirror.log_tail(400)
    assert log.count(f": new token for repository:{repo}:pull from {realm}") == 1, log  # reused
    wait_for(lambda: count(up, "GET", "/blobs/") >= 1 + len(img.layers))
    assert count(up, "GET", "/blobs/") == 1 + len(img.layers)
