"""Native TLS and mutual TLS (`http.tls`) with clients that really verify the certificate.

The registry listens on [::1] and clients name it `ip6-localhost:PORT` (docker skips verification
for 127.0.0.0/8). docker trusts the CA through /etc/docker/certs.d/HOST/ca.crt (removed after),
skopeo through --cert-dir, ctr through a hosts.toml.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import Certs, Ip6Registry, docker_trusts, free_port, require_ip6_localhost

from .clients import Ctr, Docker, Skopeo
from .conftest import ServerFactory
from .helpers import unique
from .images import ImageFactory

pytestmark = pytest.mark.e2e
TLSRegistryFactory = Callable[..., Ip6Registry]
X509 = ("x509", "certificate", "tls")


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs.make(tmp_path / "certs")


@pytest.fixture
def tls_registry(
    start_moorage: ServerFactory, certs: Certs, request: pytest.FixtureRequest
) -> Iterator[TLSRegistryFactory]:
    """Factory: moorage on [::1] with TLS (`mtls=True`: client certificates required)."""
    require_ip6_localhost()
    started: list[Ip6Registry] = []

    def factory(server: str = "uvicorn", mtls: bool = False, minimumtls: str = "tls1.2") -> Ip6Registry:
        port = free_port()
        tls: dict[str, Any] = {
            "certificate": str(certs.server_cert),
            "key": str(certs.server_key),
            "minimumtls": minimumtls,
        }
        if mtls:
            tls["clientcas"] = [str(certs.ca)]
        config = {"http": {"addr": f"[::1]:{port}", "server": server, "tls": tls, "draintimeout": "5s"}}
        base = start_moorage(config, port=port, ca_file=certs.ca, start=False)
        reg = Ip6Registry.of(base, client_cert=(str(certs.client_cert), str(certs.client_key)) if mtls else None)
        started.append(reg)
        return reg.start()

    yield factory
    failed = any(
        getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call")
    )
    for reg in started:
        reg.stop()
        if failed:
            print(f"\n----- moorage on {reg.host}, last log lines -----\n{reg.log_tail()}")


def output(p: Any) -> str:
    return (p.stdout + p.stderr).lower()


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_docker_verifies_the_ca(
    server: str, tls_registry: TLSRegistryFactory, certs: Certs, docker: Docker, images: ImageFactory
) -> None:
    """No trust or a wrong CA: docker refuses; the right CA in certs.d: push, pull by tag and digest."""
    reg = tls_registry(server)
    img = images.docker_archive(f"e2e/{unique('tls')}:1", layers=[images.layer(), images.layer()])
    docker.load(img.path)
    ref = reg.ref("tls/app", "1")
    docker.tag(img.tag, ref)

    untrusted = docker("push", ref, check=False)
    assert untrusted.returncode != 0 and "certificate signed by unknown authority" in output(untrusted), output(
        untrusted
    )
    with docker_trusts(reg.host, certs, ca=certs.other_ca):
        wrong = docker("push", ref, check=False)
    assert wrong.returncode != 0 and "certificate signed by unknown authority" in output(wrong), output(wrong)

    with docker_trusts(reg.host, certs):
        digest = docker.push_and_pull_back(ref, img.tag, img.image_id)
        docker.rmi(ref)
        docker.pull(reg.ref("tls/app", digest))
    with reg.http() as c:
        r = c.post("/v2/tls/app/blobs/uploads/")
        assert r.status_code == 202
        assert r.headers["Location"].startswith(f"https://{reg.host}/v2/tls/app/blobs/uploads/")


def test_skopeo_cert_dir(
    tls_registry: TLSRegistryFactory, certs: Certs, skopeo: Skopeo, images: ImageFactory, tmp_path: Path
) -> None:
    """skopeo --cert-dir with the CA: copy up and back; with another CA or none: x509 errors."""
    reg = tls_registry()
    good, bad = tmp_path / "good-certs", tmp_path / "bad-certs"
    good.mkdir()
    bad.mkdir()
    (good / "ca.crt").write_bytes(certs.ca.read_bytes())
    (bad / "ca.crt").write_bytes(certs.other_ca.read_bytes())
    img = images.docker_archive(f"e2e/{unique('sk')}:1")
    dest = f"docker://{reg.ref('tls/skopeo', '1')}"

    refused = skopeo("copy", "--dest-cert-dir", str(bad), f"docker-archive:{img.path}", dest, check=False)
    assert refused.returncode != 0 and "certificate signed by unknown authority" in output(refused), output(refused)
    assert skopeo("inspect", dest, check=False).returncode != 0  # the system CAs do not know ours

    skopeo("copy", "--dest-cert-dir", str(good), f"docker-archive:{img.path}", dest)
    back = tmp_path / "back"
    skopeo("copy", "--src-cert-dir", str(good), dest, f"dir:{back}")
    assert any(p.name == "manifest.json" for p in back.iterdir())
    assert skopeo("inspect", "--cert-dir", str(good), dest).returncode == 0


def test_ctr_hosts_toml(
    tls_registry: TLSRegistryFactory, certs: Certs, ctr: Ctr, images: ImageFactory, tmp_path: Path
) -> None:
    """containerd with a hosts.toml naming the CA: push and pull over verified TLS; wrong CA fails."""
    reg = tls_registry()

    def hosts_dir(name: str, ca: Path) -> Path:
        d = tmp_path / name / reg.host
        d.mkdir(parents=True)
        (d / "hosts.toml").write_text(
            f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n'
            f'  capabilities = ["pull", "resolve", "push"]\n  ca = "{ca}"\n'
        )
        return d.parent

    good, bad = hosts_dir("good", certs.ca), hosts_dir("bad", certs.other_ca)
    local = f"docker.io/e2e/{unique('ctr')}:1"
    img = images.docker_archive(local, layers=[images.layer()])
    ctr("images", "import", "--no-unpack", str(img.path))
    ref = reg.ref("tls/ctr", "1")
    ctr("images", "tag", local, ref)

    refused = ctr("images", "push", "--hosts-dir", str(bad), ref, local, check=False)
    assert refused.returncode != 0 and "certificate signed by unknown authority" in output(refused), output(refused)
    ctr("images", "push", "--hosts-dir", str(good), ref, local)
    ctr("images", "rm", ref, local)
    ctr("images", "pull", "--hosts-dir", str(good), ref)
    assert ref in ctr("images", "ls", "-q").stdout


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_mtls_requires_a_client_certificate(
    server: str, tls_registry: TLSRegistryFactory, certs: Certs, docker: Docker, images: ImageFactory
) -> None:
    """clientcas: no client certificate, no registry (httpx and docker); with docker's client.cert: works."""
    reg = tls_registry(server, mtls=True)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca)), timeout=10) as anonymous:
        with pytest.raises(httpx.HTTPError):
            anonymous.get(f"{reg.url}/v2/").raise_for_status()
    with reg.http() as c:
        assert c.get("/v2/").status_code == 200

    img = images.docker_archive(f"e2e/{unique('mtls')}:1", layers=[images.layer()])
    docker.load(img.path)
    ref = reg.ref("mtls/app", "1")
    docker.tag(img.tag, ref)
    with docker_trusts(reg.host, certs):
        refused = docker("push", ref, check=False)
    assert refused.returncode != 0, output(refused)
    with docker_trusts(reg.host, certs, client=True):
        digest, _ = docker.push(ref)
        docker.rmi(ref, img.tag)
        docker.pull(ref)
        assert docker.repo_digest(ref) == digest


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_minimumtls(server: str, tls_registry: TLSRegistryFactory, certs: Certs) -> None:
    """minimumtls tls1.3 refuses a TLS 1.2-only client; the default (tls1.2) accepts it."""

    def client(max_version: ssl.TLSVersion) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.maximum_version = max_version
        return httpx.Client(verify=context, timeout=10)

    strict = tls_registry(server, minimumtls="tls1.3")
    with client(ssl.TLSVersion.TLSv1_2) as old, pytest.raises(httpx.ConnectError):
        old.get(f"{strict.url}/v2/")
    with client(ssl.TLSVersion.TLSv1_3) as new:
        assert new.get(f"{strict.url}/v2/").status_code == 200

    default = tls_registry(server)
    with client(ssl.TLSVersion.TLSv1_2) as old:
        assert old.get(f"{default.url}/v2/").status_code == 200
