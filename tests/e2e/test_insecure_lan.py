"""Insecure LAN mode: plain HTTP to a registry docker does not treat as local (the README's
`192.168.x.x:5000` case) works once daemon.json lists it in `insecure-registries`.

docker treats 127.0.0.0/8 as insecure by default, so the registry listens on [::1] and is named
`ip6-localhost:PORT`, which docker treats like any LAN address. The daemon.json is tested for real
on a second dockerd of the test's own (own socket, data root and containerd namespace), so the
machine's engine is never reconfigured or restarted.

The start-up warning about credentials over plain HTTP is checked on a real process too.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.deploy.support import Ip6Registry, SecondDockerd, free_port, require_ip6_localhost

from .clients import Docker
from .conftest import ServerFactory
from .helpers import missing_client, run, unique
from .images import ImageFactory

pytestmark = pytest.mark.e2e
USER, PASSWORD = "lan-user", "lan-password"


@pytest.fixture
def lan_registry(start_moorage: ServerFactory, tmp_path: Path) -> Iterator[str]:
    """Moorage on plain HTTP [::1]:PORT with Basic auth; yields the host as clients write it."""
    require_ip6_localhost()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()}\n")
    port = free_port()
    config = {"http": {"addr": f"[::1]:{port}"}, "auth": {"htpasswd": {"realm": "lan", "path": str(htpasswd)}}}
    reg = Ip6Registry.of(start_moorage(config, port=port, start=False)).start()
    yield reg.host
    reg.stop()


@pytest.fixture
def lan_docker(docker_bin: str, lan_registry: str, tmp_path: Path) -> Iterator[Docker]:
    """A second dockerd whose daemon.json is the README's, naming the registry."""
    engine = SecondDockerd(tmp_path / "dockerd", {"insecure-registries": [lan_registry]}).start(docker_bin)
    config = tmp_path / "lan-docker-config"
    config.mkdir()
    client = Docker(docker_bin, config)
    client.env["DOCKER_HOST"] = f"unix://{engine.socket}"
    try:
        yield client
    finally:
        client.cleanup()
        engine.stop()


def test_plain_http_needs_insecure_registries(lan_registry: str, lan_docker: Docker, docker: Docker,
                                              images: ImageFactory) -> None:
    """The machine's engine refuses plain HTTP; the one with insecure-registries logs in, pushes, pulls."""
    host = lan_registry
    img = images.docker_archive(f"e2e/{unique('lan')}:1", layers=[images.layer()])
    ref = f"{host}/lan/app:1"

    docker.load(img.path)  # the machine's engine: no insecure-registries entry
    docker.tag(img.tag, ref)
    refused = run([docker.binary, "login", "-u", USER, "--password-stdin", host], env=docker.env,
                  input=PASSWORD + "\n", check=False)
    refused_push = docker("push", ref, check=False)
    out = (refused_push.stdout + refused_push.stderr).lower()
    assert refused.returncode != 0 and refused_push.returncode != 0
    assert "http response to https client" in out, out

    lan_docker.load(img.path)
    lan_docker.tag(img.tag, ref)
    run([lan_docker.binary, "login", "-u", USER, "--password-stdin", host], env=lan_docker.env,
        input=PASSWORD + "\n")
    digest, _ = lan_docker.push(ref)
    lan_docker.rmi(ref, img.tag)
    lan_docker.pull(ref)
    assert lan_docker.repo_digest(ref) == digest


@pytest.mark.parametrize(("addr", "warns"), [("0.0.0.0:5000", True), ("[::]:5000", True), ("127.0.0.1:5000", False)])
def test_start_warns_about_credentials_over_plain_http(addr: str, warns: bool, moorage_bin: str,
                                                       tmp_path: Path) -> None:
    """`moorage serve` with htpasswd on plain HTTP logs the warning for an all-interfaces address, not on
    loopback. It runs in a network namespace of its own (`unshare --net`: only a loopback that is down),
    so listening on every interface exposes nothing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        missing_client("unshare (util-linux) not installed", "apt-get install util-linux")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "http": {"addr": addr}, "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "auth": {"htpasswd": {"realm": "lan", "path": str(htpasswd)}},
    }))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(unshare), "--net", moorage_bin, "serve", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "startup complete" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "startup complete" in text, text
    finally:
        proc.terminate()
        proc.wait(15)
    assert ("cross the network unencrypted" in text) is warns, text
