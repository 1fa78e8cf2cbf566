"""Moorage behind nginx terminating TLS, with the nginx config shipped in docs/deploy/nginx/.

nginx listens on [::1] (clients name it ip6-localhost, so docker verifies the certificate) and
proxies to Moorage on 127.0.0.1 over plain HTTP.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.s3 import S3Backend, ServerUnavailable, start_moto
from tests.auth.e2e_support import USERS, write_auth_files
from tests.deploy.support import (
    DEPLOY_DOCS,
    IP6_HOST,
    Certs,
    Nginx,
    adapt_nginx_site,
    docker_trusts,
    free_port,
    require_ip6_localhost,
    shipped_nginx_site,
)
from tests.loopback import Listening

from .clients import Docker
from .conftest import ServerFactory
from .helpers import missing_client, run, sha256_digest, unique
from .images import DOCKER_MANIFEST, ImageFactory
from .servers import RegistryProcess, deep_merge

pytestmark = pytest.mark.e2e
MB = 1024 * 1024
BIG_UPLOAD = int(os.environ.get("MOORAGE_PROXY_UPLOAD_MB", "2200")) * MB


@dataclass
class Proxied(Listening):
    registry: RegistryProcess
    nginx: Nginx
    port: int
    ca: Path
    address = IP6_HOST
    scheme = "https"

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 600)
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), **kwargs)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs.make(tmp_path / "certs")


@pytest.fixture
def proxied(start_moorage: ServerFactory, certs: Certs, tmp_path: Path) -> Iterator[Callable[..., Proxied]]:
    """Factory: Moorage (its `http` section merged with the argument) behind the shipped nginx config."""
    require_ip6_localhost()
    proxies: list[Nginx] = []

    def factory(http: dict[str, Any] | None = None, auth: dict[str, Any] | None = None,
                port: int | None = None) -> Proxied:
        backend = free_port()
        config: dict[str, Any] = {"http": {"addr": f"127.0.0.1:{backend}", **(http or {})}}
        if auth:
            config["auth"] = auth
        reg = start_moorage(config, port=backend)
        port = port or free_port()
        nginx = Nginx(tmp_path / f"nginx-{len(proxies)}", shipped_nginx_site(port, reg.host, certs))
        proxies.append(nginx)
        nginx.start(port)
        return Proxied(reg, nginx, port, certs.ca)

    yield factory
    for nginx in proxies:
        nginx.stop()


TRUSTED = {"trustedproxies": ["127.0.0.1/32"]}


def upload_locations(c: httpx.Client, repo: str) -> list[str]:
    """Every Location of a chunked upload, a mount and a manifest PUT."""
    data = os.urandom(1000)
    digest = sha256_digest(data)
    post = c.post(f"/v2/{repo}/blobs/uploads/")
    assert post.status_code == 202, post.text
    patch = c.patch(post.headers["Location"], content=data)
    assert patch.status_code == 202, patch.text
    put = c.put(patch.headers["Location"], params={"digest": digest})
    assert put.status_code == 201, put.text
    mount = c.post(f"/v2/{repo}-mirror/blobs/uploads/", params={"mount": digest, "from": repo})
    assert mount.status_code == 201, mount.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(data), "digest": digest},
        "layers": [],
    }
    man = c.put(f"/v2/{repo}/manifests/1", json=manifest, headers={"Content-Type": DOCKER_MANIFEST})
    assert man.status_code == 201, man.text
    return [
        post.headers["Location"],
        patch.headers["Location"],
        put.headers["Location"],
        mount.headers["Location"],
        man.headers["Location"],
    ]


def test_locations_from_a_trusted_proxy(proxied: Callable[..., Proxied]) -> None:
    """Trusted nginx: every Location is https://ip6-localhost:NGINX_PORT/...; the clients follow them."""
    p = proxied(TRUSTED)
    with p.client() as c:
        for loc in upload_locations(c, "proxy/app"):
            assert loc.startswith(f"{p.url}/v2/proxy/app"), loc
        assert c.get("/v2/proxy/app/tags/list").json()["tags"] == ["1"]


def test_forwarded_headers_ignored_from_untrusted_peers(proxied: Callable[..., Proxied]) -> None:
    """nginx not listed in trustedproxies: its X-Forwarded-Proto/Host are ignored (Location says
    http://, from Host), and so are forged ones sent straight to Moorage."""
    p = proxied({"trustedproxies": ["192.0.2.0/24"]})  # a network no peer here comes from
    with p.client() as c:
        post = c.post("/v2/proxy/untrusted/blobs/uploads/")
        assert post.headers["Location"].startswith(f"http://{p.host}/v2/proxy/untrusted/blobs/uploads/")
    with p.registry.http() as direct:
        forged = direct.post(
            "/v2/proxy/untrusted/blobs/uploads/",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
        )
        assert forged.headers["Location"].startswith(f"http://{p.registry.host}/v2/"), forged.headers


def test_http_host_override(proxied: Callable[..., Proxied]) -> None:
    """http.host wins over Host and X-Forwarded-*."""
    p = proxied({**TRUSTED, "host": "https://registry.example.com"})
    with p.client() as c:
        post = c.post("/v2/proxy/host/blobs/uploads/")
        assert post.headers["Location"].startswith("https://registry.example.com/v2/proxy/host/blobs/uploads/")


def test_relative_urls(proxied: Callable[..., Proxied]) -> None:
    """http.relativeurls: Locations are paths, and a client resolving them against nginx gets through."""
    p = proxied({"relativeurls": True})
    with p.client() as c:
        for loc in upload_locations(c, "proxy/relative"):
            assert loc.startswith("/v2/proxy/relative"), loc


def test_large_streamed_upload_through_nginx(proxied: Callable[..., Proxied]) -> None:
    """One chunked PATCH past 2 GiB (no Content-Length, like docker) streams through nginx unbuffered."""
    p = proxied(TRUSTED)
    block = os.urandom(MB)
    sha = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(BIG_UPLOAD // MB):
            chunk = block[i % 997 :] + block[: i % 997]  # every MiB differs
            sha.update(chunk)
            yield chunk

    started = time.monotonic()
    with p.client() as c:
        post = c.post("/v2/proxy/big/blobs/uploads/")
        patch = c.patch(post.headers["Location"], content=body())
        assert patch.status_code == 202, patch.text
        assert patch.headers["Range"] == f"0-{BIG_UPLOAD - 1}"
        digest = "sha256:" + sha.hexdigest()
        put = c.put(patch.headers["Location"], params={"digest": digest})
        assert put.status_code == 201, put.text
        elapsed = time.monotonic() - started
        head = c.head(f"/v2/proxy/big/blobs/{digest}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == BIG_UPLOAD
        tail = c.get(f"/v2/proxy/big/blobs/{digest}", headers={"Range": f"bytes={BIG_UPLOAD - 10}-"})
        assert tail.status_code == 206 and len(tail.content) == 10
    print(f"\n{BIG_UPLOAD // MB} MiB through nginx in {elapsed:.1f}s ({BIG_UPLOAD / MB / elapsed:.0f} MiB/s)")
    assert "buffered to a temporary file" not in p.nginx.error_log()


def test_docker_push_pull_through_nginx(
    proxied: Callable[..., Proxied], certs: Certs, docker: Docker, images: ImageFactory
) -> None:
    """docker trusts nginx's CA (certs.d) and pushes/pulls through it, following its Locations."""
    p = proxied(TRUSTED)
    img = images.docker_archive(f"e2e/{unique('nginx')}:1", layers=[images.random_layer(20 * MB), images.layer()])
    docker.load(img.path)
    ref = f"{p.host}/proxy/docker:1"
    docker.tag(img.tag, ref)
    with docker_trusts(p.host, certs):
        docker.push_and_pull_back(ref, img.tag, img.image_id)
    assert "buffered to a temporary file" not in p.nginx.error_log()


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[S3Backend]:
    (tmp_path / "moto").mkdir()
    try:
        server = start_moto(tmp_path / "moto", range(15680, 15700))
    except ServerUnavailable as e:
        missing_client(f"moto S3 server unavailable: {e}", "pip install -e '.[test]'")
        raise AssertionError("unreachable") from e
    yield server
    server.stop()


def test_s3_replicas_behind_nginx(start_moorage: ServerFactory, moto: S3Backend, certs: Certs, docker: Docker,
                                  images: ImageFactory, tmp_path: Path) -> None:
    """docs/deploy/s3-replicas: two replicas with the example config on one bucket, the example
    nginx.conf round-robin in front; docker push/pull through it uses both replicas."""
    require_ip6_localhost()
    example = DEPLOY_DOCS / "s3-replicas"
    bucket = moto.make_bucket()
    config = yaml.safe_load((example / "config.yml").read_text())
    config["storage"]["s3"].update(regionendpoint=moto.endpoint, bucket=bucket, accesskey=moto.accesskey,
                                   secretkey=moto.secretkey)
    config["http"]["trustedproxies"] = ["127.0.0.1/32"]  # nginx connects from loopback here
    del config["http"]["debug"]
    replicas = []
    for _ in range(2):
        port = free_port()
        replica = start_moorage(deep_merge(config, {"http": {"addr": f"127.0.0.1:{port}"}}), port=port,
                                start=False)
        del replica.config["storage"]["filesystem"]  # the fixture's default driver
        replicas.append(replica.start())
    port = free_port()
    site = adapt_nginx_site(example / "nginx.conf", port, {
        f"server moorage-{i + 1}:5000 ": f"server {reg.host} " for i, reg in enumerate(replicas)
    }, certs)
    nginx = Nginx(tmp_path / "nginx-s3", site).start(port)
    try:
        host = f"{IP6_HOST}:{port}"
        img = images.docker_archive(f"e2e/{unique('s3')}:1", layers=[images.random_layer(8 * MB), images.layer()])
        docker.load(img.path)
        ref = f"{host}/replicas/app:1"
        docker.tag(img.tag, ref)
        with docker_trusts(host, certs):
            digest, _ = docker.push(ref)
            docker.rmi(ref, img.tag)
            docker.pull(ref)
            assert docker.repo_digest(ref) == digest
        assert {reg.host for reg in replicas} <= nginx.upstreams(), nginx.upstreams()
    finally:
        nginx.stop()


@pytest.mark.parametrize("realm", ["configured", "autoredirect"])
def test_token_auth_through_nginx(realm: str, proxied: Callable[..., Proxied], certs: Certs, docker: Docker,
                                  images: ImageFactory, tmp_path: Path) -> None:
    """Token auth (built-in token server) behind nginx: the challenge's realm is the public https URL
    (configured, or derived from the request with autoredirect), and docker logs in, pushes and pulls."""
    require_ip6_localhost()
    port = free_port()  # nginx's, named by the configured realm before it starts
    public = f"https://{IP6_HOST}:{port}"
    auth = write_auth_files(tmp_path / "auth").token(f"{public}/auth/token")
    if realm == "autoredirect":
        auth["token"].update(realm="https://token.invalid/unused", autoredirect=True)
    p = proxied(TRUSTED, auth=auth, port=port)
    with p.client() as c:
        challenge = c.get("/v2/").headers["WWW-Authenticate"]
    assert f'realm="{public}/auth/token"' in challenge, challenge

    img = images.docker_archive(f"e2e/{unique('token')}:1", layers=[images.layer()])
    docker.load(img.path)
    ref = f"{p.host}/alice/app:1"
    docker.tag(img.tag, ref)
    with docker_trusts(p.host, certs):
        run([docker.binary, "login", p.host, "-u", "alice", "--password-stdin"], env=docker.env,
            input=USERS["alice"] + "\n")
        digest, _ = docker.push(ref)
        docker.rmi(ref, img.tag)
        docker.pull(ref)
        assert docker.repo_digest(ref) == digest
