"""Servers for the storage and S3 tests on 127.0.0.1: moto and Ceph radosgw (started by ``bench.s3``, which
the bench shares, in the tests' port ranges) and nginx as a counting proxy in front of them.

Each is stopped by killing exactly the processes it started.  Only loopback addresses are used.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.s3 import S3Backend, ServerUnavailable, free_port, start_radosgw, wait_http

MOTO_PORTS = range(15200, 15220)
RADOSGW_PORTS = range(15220, 15250)
NGINX_PORTS = range(15250, 15280)
# radosgw keeps objects in memory: its capacity
MEMSTORE_BYTES = int(os.environ.get("CEPH_MEMSTORE_BYTES", str(4 << 30)))


_shared: dict[str, S3Backend | ServerUnavailable] = {}


def shared_radosgw(make_directory: Callable[[], Path]) -> S3Backend:
    """One radosgw per test process (it takes ~15 s to start), stopped when the process exits."""
    if "radosgw" not in _shared:
        try:
            server = start_radosgw(make_directory(), RADOSGW_PORTS, MEMSTORE_BYTES)
        except ServerUnavailable as e:
            _shared["radosgw"] = e
            raise
        atexit.register(server.stop)
        _shared["radosgw"] = server
    found = _shared["radosgw"]
    if isinstance(found, ServerUnavailable):
        raise found
    return found


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


def start_nginx(directory: Path, upstreams: list[str], log_format: str, ports: range = NGINX_PORTS) -> Nginx:
    """Round-robin proxy to ``upstreams`` (HOST:PORT), streaming bodies both ways, logging ``log_format``."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(exe, os.X_OK):
        raise ServerUnavailable("nginx is not installed (apt-get install nginx)")
    port = free_port(ports)
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
