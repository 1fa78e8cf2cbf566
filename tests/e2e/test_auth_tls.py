"""Auth over verified TLS: docker (certs.d), skopeo (--cert-dir) and ctr (hosts.toml) log in, push
and pull with htpasswd and with token auth, the token realm being the same HTTPS server.

The registry listens on [::1] and clients name it `ip6-localhost:PORT`, since docker does not verify
certificates for 127.0.0.0/8.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from auth import keys
from auth.base import Access
from auth.verifier import TokenVerifier
from tests.auth.e2e_support import (
    ALICE,
    BOB,
    ISSUER,
    SERVICE,
    USERS,
    assert_refused,
    auth_port,
    login,
    run_token_server,
    write_auth_files,
)
from tests.deploy.support import IP6_HOST, Certs, Ip6Registry, docker_trusts, require_ip6_localhost

from .clients import Ctr, Docker, Skopeo
from .helpers import run, unique
from .images import ImageFactory
from .servers import ServerFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs.make(tmp_path / "certs")


@pytest.fixture(params=["htpasswd", "token"])
def tls_secured(request: pytest.FixtureRequest, start_moorage: ServerFactory, certs: Certs,
                tmp_path: Path) -> Ip6Registry:
    require_ip6_localhost()
    files = write_auth_files(tmp_path / "auth")
    port = auth_port()
    auth = files.basic() if request.param == "htpasswd" else files.token(f"https://{IP6_HOST}:{port}/auth/token")
    tls = {"certificate": str(certs.server_cert), "key": str(certs.server_key)}
    config = {"http": {"addr": f"[::1]:{port}", "tls": tls}, "auth": auth}
    base = start_moorage(config, port=port, ca_file=certs.ca, start=False)
    reg = Ip6Registry.of(base)
    request.addfinalizer(reg.stop)
    return reg.start()


def test_docker_over_tls(tls_secured: Ip6Registry, certs: Certs, docker: Docker, images: ImageFactory) -> None:
    reg = tls_secured
    img = images.docker_archive(f"e2e/{unique('tlsauth')}:1", layers=[images.layer()])
    docker.load(img.path)
    own, foreign = reg.ref("alice/tls", "1"), reg.ref("bob/tls", "1")
    docker.tag(img.tag, own)
    docker.tag(img.tag, foreign)
    with docker_trusts(reg.host, certs):
        assert_refused(login(docker, reg.host, "alice", "wrong"))
        assert login(docker, reg.host, "alice", USERS["alice"]).returncode == 0
        digest, _ = docker.push(own)
        assert_refused(docker("push", foreign, check=False))
        docker.rmi(own)
        docker.pull(own)
        assert docker.repo_digest(own) == digest
        docker("logout", reg.host)
        docker.rmi(own)
        assert_refused(docker("pull", own, check=False))


def test_skopeo_over_tls(tls_secured: Ip6Registry, certs: Certs, skopeo: Skopeo, images: ImageFactory,
                         tmp_path: Path) -> None:
    reg = tls_secured
    cert_dir = tmp_path / "cert-dir"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(certs.ca.read_bytes())
    img = images.docker_archive(f"e2e/{unique('tlsauth')}:1", layers=[images.layer()])
    own = f"docker://{reg.ref('alice/tls-sk', '1')}"
    skopeo("copy", "--dest-cert-dir", str(cert_dir), "--dest-creds", ALICE, f"docker-archive:{img.path}", own)
    assert_refused(skopeo("inspect", "--cert-dir", str(cert_dir), "--creds", BOB, own, check=False))
    login_cmd = [skopeo.binary, "login", "--cert-dir", str(cert_dir), "-u", "alice", "--password-stdin", reg.host]
    run(login_cmd, env=skopeo.env, input=USERS["alice"] + "\n")
    assert skopeo("inspect", "--cert-dir", str(cert_dir), own).returncode == 0


def test_ctr_over_tls(tls_secured: Ip6Registry, certs: Certs, ctr: Ctr, images: ImageFactory,
                      tmp_path: Path) -> None:
    reg = tls_secured
    hosts = tmp_path / "hosts" / reg.host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n'
        f'  capabilities = ["pull", "resolve", "push"]\n  ca = "{certs.ca}"\n'
    )
    local = f"docker.io/e2e/{unique('ctr')}:1"
    img = images.docker_archive(local, layers=[images.layer()])
    ctr("images", "import", "--no-unpack", str(img.path))
    own = reg.ref("alice/tls-ctr", "1")
    ctr("images", "tag", local, own)
    hosts_dir = ["--hosts-dir", str(hosts.parent)]
    assert_refused(ctr("images", "push", *hosts_dir, "--user", BOB, own, local, check=False))
    ctr("images", "push", *hosts_dir, "--user", ALICE, own, local)
    ctr("images", "rm", own)
    assert_refused(ctr("images", "pull", *hosts_dir, own, check=False))
    ctr("images", "pull", *hosts_dir, "--user", ALICE, own)


def test_refused_large_body_over_tls_gets_a_clean_401(tls_secured: Ip6Registry) -> None:
    """An unauthenticated 64 MB PATCH is read to the end and answered 401, not cut off mid-TLS."""
    reg = tls_secured
    body = b"\0" * (64 * 1024 * 1024)
    with reg.http() as c:
        for _ in range(2):  # the connection stays usable after the refusal
            r = c.patch("/v2/alice/big/blobs/uploads/00000000-0000-0000-0000-000000000000", content=body,
                        headers={"Content-Range": f"0-{len(body) - 1}"})
            assert r.status_code == 401, r.text
            assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
            assert r.headers["www-authenticate"].split()[0] in ("Basic", "Bearer")


def test_standalone_token_server_over_tls(moorage_bin: str, certs: Certs, tmp_path: Path) -> None:
    """`moorage token-server` with `auth.tokenserver.tls`: verified HTTPS, tokens that verify."""
    files = write_auth_files(tmp_path / "auth")
    tls = {"certificate": str(certs.server_cert), "key": str(certs.server_key)}
    with run_token_server(moorage_bin, files, tmp_path, tls=tls, ca=certs.ca) as url:
        assert url.startswith("https://")
        with pytest.raises(httpx.ConnectError):  # the system CAs do not know ours
            httpx.get(url, timeout=10)
        trust = ssl.create_default_context(cafile=str(certs.ca))
        r = httpx.get(url, params={"service": SERVICE, "scope": "repository:alice/x:push"},
                      auth=("alice", USERS["alice"]), verify=trust, timeout=10)
        assert r.status_code == 200
        verifier = TokenVerifier(ISSUER, SERVICE, keys.load_certificates(files.cert, "cert"))
        assert verifier.verify(r.json()["token"]).accesses == {Access("repository", "alice/x", "push")}
        assert httpx.get(url, auth=("alice", "wrong"), verify=trust, timeout=10).status_code == 401
