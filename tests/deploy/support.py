"""Helpers for the deployment tests: ports, certificates, a registry on [::1], nginx, docker trust, a
second docker engine with its own daemon.json.

Docker never verifies TLS for 127.0.0.0/8, so every TLS test binds on [::1] and names it
`ip6-localhost` (which /etc/hosts must map to ::1, as `.ci/run` arranges).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import trustme

from tests.e2e.helpers import free_port_in, missing_client, run
from tests.e2e.servers import RegistryProcess

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DOCS = REPO / "docs" / "deploy"
PORTS = range(15600, 15700)
IP6_HOST = "ip6-localhost"
DOCKER_CERTS = Path("/etc/docker/certs.d")


def free_port() -> int:
    """A port in 15600-15699 free on both 127.0.0.1 and ::1 a moment ago."""
    return free_port_in(PORTS)


def require_ip6_localhost() -> None:
    """Skip (fail in CI) unless `ip6-localhost` resolves to ::1."""
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(IP6_HOST, None)}
    except socket.gaierror:
        addrs = set()
    if "::1" not in addrs:
        missing_client("ip6-localhost does not resolve to ::1", "add '::1 ip6-localhost' to /etc/hosts")


def wait_port(host: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout}s")


def port_closed(host: str, port: int) -> bool:
    """True when a TCP connect is refused."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# ------------------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate for every loopback name, a client certificate, and a second CA."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    @classmethod
    def make(cls, directory: Path) -> Certs:
        directory.mkdir(parents=True, exist_ok=True)
        ca, other = trustme.CA(), trustme.CA()
        server = ca.issue_cert(IP6_HOST, "localhost", "::1", "127.0.0.1")
        client = ca.issue_cert("e2e-client@moorage.test")
        out = cls(directory, directory / "ca.crt", directory / "server.crt", directory / "server.key",
                  directory / "client.cert", directory / "client.key", directory / "other-ca.crt")
        ca.cert_pem.write_to_path(str(out.ca))
        other.cert_pem.write_to_path(str(out.other_ca))
        out.server_cert.write_bytes(b"".join(p.bytes() for p in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(out.server_key))
        out.client_cert.write_bytes(b"".join(p.bytes() for p in client.cert_chain_pems))
        client.private_key_pem.write_to_path(str(out.client_key))
        return out


# ------------------------------------------------------------------------------- registry on [::1]


@dataclass
class Ip6Registry(RegistryProcess):
    """A `moorage serve` on [::1] that clients reach as `ip6-localhost:PORT`; with a client
    certificate when it asks for one (mTLS)."""

    client_cert: tuple[str, str] | None = None

    @property
    def host(self) -> str:
        return f"{IP6_HOST}:{self.port}"

    def http(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 60)
        verify: ssl.SSLContext | bool = False
        if self.ca_file:
            verify = ssl.create_default_context(cafile=str(self.ca_file))
            if self.client_cert:
                verify.load_cert_chain(*self.client_cert)
        return httpx.Client(base_url=self.url, verify=verify, **kwargs)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"moorage exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                with self.http(timeout=2) as c:
                    if c.get("/v2/").status_code in (200, 401):
                        return
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moorage did not answer within {timeout}s ({last}); log:\n{self.log_tail()}")

    @classmethod
    def of(cls, server: RegistryProcess, **extra: Any) -> Ip6Registry:
        return cls(**{f.name: getattr(server, f.name) for f in fields(server)}, **extra)


# -------------------------------------------------------------------------------------------- nginx


class Nginx:
    """nginx in the foreground with a private prefix; `site` is a `server {}` config text."""

    def __init__(self, workdir: Path, site: str) -> None:
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(self.binary, os.X_OK):
            missing_client("nginx not installed", "apt-get install nginx-light (see .ci/run)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / sub).mkdir(exist_ok=True)
        (workdir / "site.conf").write_text(site)
        (workdir / "nginx.conf").write_text(
            f"""pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$request $status $upstream_addr';
    access_log {workdir}/access.log upstream;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {workdir}/site.conf;
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        run([self.binary, "-t", "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")])

    def start(self, port: int, host: str = "::1") -> Nginx:
        self.check()
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        wait_port(host, port)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def upstreams(self) -> set[str]:
        """The upstream addresses that served the logged requests."""
        lines = (self.workdir / "access.log").read_text().splitlines()
        return {line.rsplit(" ", 1)[1] for line in lines if line.strip()}

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def shipped_nginx_site(listen_port: int, upstream: str, certs: Certs) -> str:
    """docs/deploy/nginx/moorage.conf with its example host, port, certificate and upstream replaced."""
    return adapt_nginx_site(DEPLOY_DOCS / "nginx" / "moorage.conf", listen_port,
                            {"server 127.0.0.1:5000;": f"server {upstream};", "listen [::]:443 ssl;": ""}, certs)


def adapt_nginx_site(path: Path, listen_port: int, replacements: dict[str, str], certs: Certs) -> str:
    """A shipped nginx site listening on [::1]:`listen_port` with the test's certificate."""
    text = path.read_text()
    replacements = {
        "listen 443 ssl;": f"listen [::1]:{listen_port} ssl;",
        "/etc/nginx/certs/registry.example.com.crt": str(certs.server_cert),
        "/etc/nginx/certs/registry.example.com.key": str(certs.server_key),
        "server_name registry.example.com;": f"server_name {IP6_HOST};",
        **replacements,
    }
    for old, new in replacements.items():
        assert old in text, f"{path.relative_to(REPO)} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------------- docker engines


@contextlib.contextmanager
def docker_trusts(host: str, certs: Certs, ca: Path | None = None, client: bool = False) -> Iterator[Path]:
    """/etc/docker/certs.d/HOST/ca.crt (and client.cert/.key for mTLS) for the test's duration."""
    d = DOCKER_CERTS / host
    try:
        d.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        missing_client(f"cannot write {DOCKER_CERTS}", "run the TLS e2e tests as root")
    shutil.copy(ca or certs.ca, d / "ca.crt")
    if client:
        shutil.copy(certs.client_cert, d / "client.cert")
        shutil.copy(certs.client_key, d / "client.key")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class SecondDockerd:
    """A dockerd of our own (own socket, data root, containerd namespace) started with a daemon.json,
    to test settings such as `insecure-registries` without touching the machine's engine."""

    def __init__(self, workdir: Path, daemon_json: dict[str, Any]) -> None:
        self.dockerd = shutil.which("dockerd")
        if self.dockerd is None:
            missing_client("dockerd not installed", "apt-get install docker.io")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "daemon.json"
        self.config.write_text(json.dumps(daemon_json))
        self.socket = workdir / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        ns = f"moorage-e2e-{os.getpid()}-{port_suffix()}"
        self.args = [
            str(self.dockerd), "--config-file", str(self.config),
            "--containerd=/run/containerd/containerd.sock",
            "--containerd-namespace", ns, "--containerd-plugins-namespace", ns + "-plugins",
            "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "exec"),
            "--pidfile", str(workdir / "docker.pid"), "-H", f"unix://{self.socket}",
            "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
        ]

    def start(self, docker_bin: str) -> SecondDockerd:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "dockerd.log", "wb"),  # noqa: SIM115
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"second dockerd exited:\n{self.log()}")
            if run([docker_bin, "-H", f"unix://{self.socket}", "info"], check=False, timeout=20).returncode == 0:
                return self
            time.sleep(0.3)
        raise AssertionError(f"second dockerd did not answer:\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # overlay2 leaves root-owned layers behind; they are plain files once dockerd is gone
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def log(self) -> str:
        path = self.workdir / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def port_suffix() -> str:
    return f"{random.randrange(16**6):06x}"
