"""S3 servers for tests on 127.0.0.1: moto (pip only, fast) and Ceph radosgw (real SigV4, apt, root).

Each starts in the background, waits until it answers HTTP and is stopped by killing exactly the
processes it started.  Only loopback addresses are used.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"
CEPH_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")


class ServerUnavailable(Exception):
    """The server cannot be installed or started on this machine."""


def free_port(first: int, last: int, count: int = 1) -> int:
    """The first port p in [first, last] with p..p+count-1 all free on 127.0.0.1."""
    for port in range(first, last + 2 - count):
        try:
            for p in range(port, port + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise ServerUnavailable(f"no free port in {first}-{last}")


def wait_http(url: str, procs: list[subprocess.Popen[bytes]], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            pass
        for proc in procs:
            if proc.poll() is not None:
                raise ServerUnavailable(f"{proc.args[0]} exited {proc.returncode}: {_tail(log)}")
        time.sleep(0.1)
    raise ServerUnavailable(f"no answer from {url} after {timeout}s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-5:])
    except OSError:
        return "(no log)"


@dataclass
class S3Server:
    kind: str
    endpoint: str
    directory: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_in: float = 0.0
    accesskey: str = ACCESS_KEY
    secretkey: str = SECRET_KEY

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.accesskey,
            aws_secret_access_key=self.secretkey, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"moorage-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def parameters(self, bucket: str, **extra: object) -> dict[str, object]:
        """``storage.s3`` parameters for a driver on this server."""
        return {"regionendpoint": self.endpoint, "region": "us-east-1", "bucket": bucket,
                "accesskey": self.accesskey, "secretkey": self.secretkey, **extra}

    def stop(self) -> None:
        for proc in self.procs:  # only what we started, newest first
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_moto(directory: Path, first_port: int = 15200, last_port: int = 15219) -> S3Server:
    port = free_port(first_port, last_port)
    log = directory / "moto.log"
    # large objects are spooled to temporary files: keep them in the test's directory
    env = {**os.environ, "TMPDIR": str(directory)}
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    server = S3Server("moto", f"http://127.0.0.1:{port}", directory, [proc])
    try:
        wait_http(server.endpoint + "/", server.procs, 60, log)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - t0
    return server


def install_ceph() -> None:
    """apt-get the Ceph daemons when missing (Debian; needs root)."""
    if all(shutil.which(c) for c in ("radosgw", "ceph-mon", "ceph-osd", "ceph", "radosgw-admin")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServerUnavailable("radosgw is not installed and apt-get as root is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = subprocess.run(["apt-cache", "policy", "radosgw"], capture_output=True, text=True, env=env)
    if "Candidate: (none)" in policy.stdout or "Candidate:" not in policy.stdout:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env, timeout=300)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *CEPH_PACKAGES],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if done.returncode != 0:
        raise ServerUnavailable(f"apt-get install {' '.join(CEPH_PACKAGES)} failed: {done.stderr[-500:]}")


_shared: dict[str, S3Server | ServerUnavailable] = {}


def shared_radosgw(make_directory: Callable[[], Path]) -> S3Server:
    """One radosgw per test process (it takes ~15 s to start), stopped when the process exits."""
    if "radosgw" not in _shared:
        try:
            server = start_radosgw(make_directory())
        except ServerUnavailable as e:
            _shared["radosgw"] = e
            raise
        atexit.register(server.stop)
        _shared["radosgw"] = server
    found = _shared["radosgw"]
    if isinstance(found, ServerUnavailable):
        raise found
    return found


def start_radosgw(directory: Path, first_port: int = 15220, last_port: int = 15249,
                  timeout: float = 120) -> S3Server:
    """A throw-away single-node Ceph cluster (mon + memstore OSD + rgw) serving S3 on 127.0.0.1."""
    install_ceph()
    port = free_port(first_port, last_port, count=2)
    mon_port = port + 1
    d = directory
    for sub in ("mon.a", "osd.0", "rgw", "run", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid, osd_uuid = uuid.uuid4(), uuid.uuid4()
    conf = d / "ceph.conf"
    conf.write_text(f"""[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_bind_ipv6 = false
public_addr = 127.0.0.1
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
run_dir = {d}/run
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok
[mon.a]
mon_data = {d}/mon.a
[osd.0]
osd_data = {d}/osd.0
osd_objectstore = memstore
memstore_device_bytes = {os.environ.get("CEPH_MEMSTORE_BYTES", str(4 << 30))}
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{port}
rgw_data = {d}/rgw
keyring = {d}/rgw/keyring
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
""")
    c = ["-c", str(conf)]
    t0 = time.monotonic()
    server = S3Server("radosgw", f"http://127.0.0.1:{port}", d)

    def run(*args: str, limit: float = 60) -> str:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=limit)
        if done.returncode != 0:
            raise ServerUnavailable(f"{' '.join(args[:3])} failed: {done.stderr[-400:]}")
        return done.stdout

    def daemon(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(d / "log" / f"{name}.out", "wb") as out:
            proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT)
        server.procs.insert(0, proc)
        return proc

    def until(check: list[str], expect: str, proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out = subprocess.run(check, capture_output=True, text=True, timeout=5)
                if out.returncode == 0 and expect in out.stdout:
                    return
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None:
                raise ServerUnavailable(f"{what} exited {proc.returncode}: {_tail(d / 'log' / f'{what}.log')}")
            time.sleep(0.5)
        raise ServerUnavailable(f"{what} not up after {timeout}s")

    try:
        run("monmaptool", "--create", "--fsid", str(fsid), "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
            str(d / "monmap"))
        run("ceph-authtool", "--create-keyring", str(d / "mon.keyring"), "--gen-key", "-n", "mon.",
            "--cap", "mon", "allow *")
        run("ceph-authtool", "--create-keyring", str(d / "rgw" / "keyring"), "--gen-key", "-n", "client.rgw.a")
        run("ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", str(d / "mon.keyring"))
        mon = daemon("mon", "ceph-mon", *c, "-i", "a", "-f")
        until(["ceph", *c, "mon", "stat"], "", mon, "mon.a")
        osd_id = run("ceph", *c, "osd", "new", str(osd_uuid), limit=30).strip()
        if osd_id != "0":
            raise ServerUnavailable(f"unexpected osd id {osd_id!r}")
        run("ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", str(osd_uuid))
        osd = daemon("osd", "ceph-osd", *c, "-i", "0", "-f")
        until(["ceph", *c, "osd", "stat"], " 1 up", osd, "osd.0")
        rgw = daemon("rgw", "radosgw", *c, "-n", "client.rgw.a", "-f")
        wait_http(server.endpoint + "/", [rgw], timeout, d / "log" / "client.rgw.a.log")
        run("radosgw-admin", *c, "-n", "client.admin", "user", "create", "--uid=s3test", "--display-name=s3test",
            f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}")
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - t0
    return server


@dataclass
class Nginx:
    """Debian's nginx as a reverse proxy on 127.0.0.1; ``access_log`` has one line per request."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes]

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def log_lines(self) -> list[str]:
        try:
            return self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(directory: Path, upstreams: list[str], log_format: str,
                first_port: int = 15250, last_port: int = 15279) -> Nginx:
    """Round-robin proxy to ``upstreams`` (HOST:PORT), streaming bodies both ways, logging ``log_format``."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(exe, os.X_OK):
        raise ServerUnavailable("nginx is not installed (apt-get install nginx)")
    port = free_port(first_port, last_port)
    d = directory
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server {u};" for u in upstreams)
    temp = " ".join(f"{kind}_temp_path {d}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                       "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(f"""{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format e2e '{log_format}';
  access_log {d}/access.log e2e;
  {temp}
  upstream backends {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
    }}
  }}
}}
""")
    with open(d / "nginx.out", "wb") as out:
        proc = subprocess.Popen([exe, "-p", str(d), "-c", str(d / "nginx.conf")], stdout=out,
                                stderr=subprocess.STDOUT)
    nginx = Nginx(port, d, proc)
    try:
        wait_http(f"http://127.0.0.1:{port}/", [proc], 30, d / "error.log")
    except BaseException:
        nginx.stop()
        raise
    return nginx
