"""S3 servers on 127.0.0.1 for the bench (``--s3``) and the tests: a moto server, a throw-away single-node
Ceph radosgw, or an existing endpoint.

Every daemon stays inside the port range its caller reserves (the Ceph OSD's messenger ports included), so
runs of the bench and of the tests never collide.  Only processes started here are stopped, by their own
PIDs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bench import procstat

HOST = "127.0.0.1"
ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
CEPH_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")
GIB = 1 << 30


class ServerUnavailable(RuntimeError):
    """The server could not be installed, started or reached on this machine."""


def port_free(port: int) -> bool:
    """Nobody listens on it (TIME_WAIT leftovers of an earlier run are fine: servers bind with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port(ports: range, count: int = 1) -> int:
    """The first port p of ``ports`` with p..p+count-1 all free (and in ``ports``)."""
    for port in ports[: len(ports) + 1 - count]:
        if all(port_free(p) for p in range(port, port + count)):
            return port
    raise ServerUnavailable(f"no free port in {ports.start}-{ports.stop - 1}")


def wait_http(url: str, procs: list[subprocess.Popen[bytes]], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer: it is serving
        except OSError:
            pass
        for proc in procs:
            if proc.poll() is not None:
                raise ServerUnavailable(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        time.sleep(0.1)
    raise ServerUnavailable(f"no answer from {url} after {timeout:.0f}s:\n{_tail(log)}")


@dataclass
class S3Backend:
    """An S3 endpoint plus whatever processes the bench started for it."""

    kind: str  # moto | radosgw | url
    endpoint: str
    accesskey: str = ACCESS_KEY
    secretkey: str = SECRET_KEY
    region: str = REGION
    directory: Path | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # newest first
    conf: Path | None = None  # radosgw: ceph.conf
    started_in: float = 0.0
    created_buckets: list[str] = field(default_factory=list)
    _client: object = None

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")

    def describe(self) -> str:
        return f"{self.kind} at {self.endpoint}" + (f" (started in {self.started_in:.0f}s)" if self.procs else "")

    def client(self):  # type: ignore[no-untyped-def]
        if self._client is None:
            import boto3  # moorage depends on boto3; imported here so filesystem runs never need it
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, aws_access_key_id=self.accesskey,
                aws_secret_access_key=self.secretkey, region_name=self.region,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                              max_pool_connections=16),
            )
        return self._client

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"moorage-{uuid.uuid4().hex[:12]}"
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        self.created_buckets.append(name)
        return name

    def parameters(self, bucket: str, **extra: object) -> dict[str, object]:
        """``storage.s3`` parameters for a Moorage driver on this server."""
        return {"regionendpoint": self.endpoint, "region": self.region, "bucket": bucket,
                "accesskey": self.accesskey, "secretkey": self.secretkey, **extra}

    def storage(self, bucket: str, rootdirectory: str) -> dict[str, object]:
        """The ``storage.s3`` section for either registry (Distribution 2.8.2 keys; Moorage reads the same).

        Distribution 2.8.2 has no ``forcepathstyle`` key: it forces path-style addressing whenever
        ``regionendpoint`` is set, and so does Moorage."""
        return self.parameters(bucket, rootdirectory=rootdirectory, secure=self.secure, v4auth=True)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix`` (and multipart uploads left there); returns objects deleted."""
        c = self.client()
        n = 0
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                n += len(keys)
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for up in page.get("Uploads", []):
                c.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        return n

    def reclaim(self) -> None:
        """radosgw: run garbage collection now, so deleted data leaves the in-memory OSD before the next case."""
        if self.kind != "radosgw" or self.conf is None:
            return
        subprocess.run(["radosgw-admin", "-c", str(self.conf), "-n", "client.admin", "gc", "process",
                        "--include-all"], capture_output=True, timeout=300, check=False)

    def watch_memory(self, floor: int = GIB) -> None:
        """radosgw keeps objects in RAM (about twice their size): should the machine's available memory
        drop below ``floor``, kill our OSD (its S3 requests then fail) rather than let the machine swap or
        the OOM killer pick a victim."""
        osd = [p for p in self.procs if Path(str(p.args[0])).name == "ceph-osd"]
        if not osd:
            return

        def watch() -> None:
            while osd[0].poll() is None:
                if 0 < _mem_available() < floor:
                    print(f"  MemAvailable below {floor >> 20} MiB: killing radosgw's in-memory OSD "
                          f"(pid {osd[0].pid})", file=sys.stderr, flush=True)
                    osd[0].kill()
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, name="radosgw-memory", daemon=True).start()

    def stop(self) -> None:
        """Empty and remove the buckets created on an external endpoint; stop the processes we started."""
        if self.kind == "url":
            for bucket in self.created_buckets:
                try:
                    self.delete_prefix(bucket, "")
                    self.client().delete_bucket(Bucket=bucket)
                except Exception as exc:  # noqa: BLE001 - best effort, reported
                    print(f"  could not remove bucket {bucket}: {exc}", file=sys.stderr)
        for proc in self.procs:  # rgw, osd, mon: newest first
            procstat.stop(proc, 15)


def from_url(url: str) -> S3Backend:
    """``http[s]://[KEY:SECRET@]HOST:PORT``; keys default to $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"--s3 {url!r}: expected moto, radosgw or an http(s):// endpoint URL")
    ak = unquote(parts.username or "") or os.environ.get("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    sk = unquote(parts.password or "") or os.environ.get("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    if ":" in parts.hostname:
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    return S3Backend("url", f"{parts.scheme}://{host}", ak, sk,
                     os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or REGION)


def start_moto(directory: Path, ports: range) -> S3Backend:
    """``python -m moto.server`` on the first free port of ``ports``; large objects spool to files in
    ``directory``."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise ServerUnavailable("moto is not installed: pip install 'moto[s3]' flask flask-cors") from exc
    port = free_port(ports)
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "moto.log"
    env = {**os.environ, "TMPDIR": str(directory)}
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    backend = S3Backend("moto", f"http://{HOST}:{port}", directory=directory, procs=[proc])
    with _starting(backend, t0):
        wait_http(backend.endpoint + "/", backend.procs, 60, log)
    return backend


@contextmanager
def _starting(backend: S3Backend, t0: float) -> Iterator[S3Backend]:
    """The start of ``backend``'s processes: on failure (or Ctrl-C) they are stopped rather than left behind;
    on success ``started_in`` says how long it took since ``t0``."""
    try:
        yield backend
    except BaseException:
        backend.stop()
        raise
    backend.started_in = time.monotonic() - t0


def _install_ceph() -> None:
    if all(shutil.which(c) for c in ("radosgw", "ceph-mon", "ceph-osd", "ceph", "radosgw-admin", "monmaptool")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServerUnavailable(f"radosgw is not installed: apt-get install {' '.join(CEPH_PACKAGES)} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = subprocess.run(["apt-cache", "policy", "radosgw"], capture_output=True, text=True, env=env)
    if "Candidate: (none)" in policy.stdout or "Candidate:" not in policy.stdout:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300, check=False)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *CEPH_PACKAGES],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    if done.returncode != 0:
        raise ServerUnavailable(f"apt-get install {' '.join(CEPH_PACKAGES)} failed: {done.stderr[-400:]}")


def start_radosgw(directory: Path, ports: range, memstore_bytes: int, timeout: float = 120) -> S3Backend:
    """A single-node Ceph cluster (mon + memstore OSD + rgw) on 127.0.0.1, all of it inside ``ports``:
    rgw on ``ports[0]``, the mon on ``ports[1]``, the OSD's messenger ports in the rest (it needs 8)."""
    _install_ceph()
    if len(ports) < 12:
        raise ServerUnavailable("radosgw needs 12 ports")
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise ServerUnavailable(f"ports {busy} (reserved for radosgw) are in use")
    rgw_port, mon_port = ports[0], ports[1]
    d = directory
    for sub in ("mon.a", "osd.0", "rgw", "run", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid, osd_uuid = uuid.uuid4(), uuid.uuid4()
    conf = d / "ceph.conf"
    conf.write_text(f"""[global]
fsid = {fsid}
mon_host = v2:{HOST}:{mon_port}
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_bind_ipv6 = false
public_addr = {HOST}
cluster_addr = {HOST}
ms_bind_port_min = {ports[2]}
ms_bind_port_max = {ports[-1]}
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
memstore_device_bytes = {memstore_bytes}
[client.rgw.a]
rgw_frontends = beast endpoint={HOST}:{rgw_port}
rgw_data = {d}/rgw
keyring = {d}/rgw/keyring
# deleted data is reclaimed by an explicit gc between cases, and soon anyway (memstore holds it in RAM)
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 10
""")
    c = ["-c", str(conf)]
    t0 = time.monotonic()
    backend = S3Backend("radosgw", f"http://{HOST}:{rgw_port}", directory=d, conf=conf)

    def run(*args: str, limit: float = 60) -> str:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=limit, check=False)
        if done.returncode != 0:
            raise ServerUnavailable(f"{' '.join(args[:3])} failed: {done.stderr[-400:]}")
        return done.stdout

    def daemon(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(d / "log" / f"{name}.out", "wb") as out:
            proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        backend.procs.insert(0, proc)
        return proc

    def until(check: list[str], expect: str, proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out = subprocess.run(check, capture_output=True, text=True, timeout=5, check=False)
                if out.returncode == 0 and expect in out.stdout:
                    return
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None:
                raise ServerUnavailable(f"{what} exited with {proc.returncode}:\n{_tail(d / 'log' / f'{what}.log')}")
            time.sleep(0.5)
        raise ServerUnavailable(f"{what} not up after {timeout:.0f}s")

    with _starting(backend, t0):
        run("monmaptool", "--create", "--fsid", str(fsid), "--addv", "a", f"[v2:{HOST}:{mon_port}]",
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
        wait_http(backend.endpoint + "/", [rgw], timeout, d / "log" / "client.rgw.a.log")
        run("radosgw-admin", *c, "-n", "client.admin", "user", "create", "--uid=bench", "--display-name=bench",
            f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}")
    return backend


def _mem_available() -> int:
    """MemAvailable in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memstore_default() -> int:
    """Capacity of radosgw's in-memory OSD: 12 GiB, less on a small machine (half of MemAvailable)."""
    avail = _mem_available()
    return min(12 * GIB, max(2 * GIB, avail // 2)) if avail else 12 * GIB


def start(spec: str, directory: Path, ports: range, memstore_bytes: int = 0) -> S3Backend:
    """``moto`` | ``radosgw`` | an endpoint URL; ``ports`` is the block reserved for the S3 server."""
    if spec == "moto":
        return start_moto(directory, ports)
    if spec == "radosgw":
        return start_radosgw(directory, ports, memstore_bytes or memstore_default())
    return from_url(spec)
