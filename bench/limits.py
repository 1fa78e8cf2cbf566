"""``python -m bench limits``: what this machine allows, so that each figure can be read as a fraction of it.

* sha256 on one core and on every core at once (hashlib, 1 MiB updates; it releases the GIL);
* disk: a sequential write + fdatasync in the storage directory, and small files written the way a manifest
  PUT writes them (temp + fsync + rename, one directory fsync per file or per group of files);
* loopback TCP: send/recv and sendfile/recv between two threads;
* the bare ASGI servers (``bench.bare_asgi``: no registry logic) under uvicorn (uvloop + httptools) and
  granian: ``GET /v2/`` c64 rate, receiving a 512 MiB body, sending a 512 MiB file.

Each probe runs ``--reps`` times and keeps the best (on a shared machine noise only ever lowers a ceiling);
the spread is printed next to it.  The figures are written to ``limits.json`` in the bench cache, where
``python -m bench`` finds them and prints each result as a fraction of its limit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench import procstat
from bench.distribution_v3 import cache_dir
from bench.loadgen import raw_request, run_load
from bench.report import B, Row
from bench.servers import HOST, free_port
from bench.wire import Conn

MIB = 1 << 20
PORTS = range(15480, 15500)  # the top of the bench's range, below nothing the registries use first


def limits_file() -> Path:
    return cache_dir() / "limits.json"


def best_of(reps: int, probe: Callable[[], float]) -> tuple[float, float]:
    """Best value of ``reps`` runs and the worst, for the spread."""
    values = [probe() for _ in range(reps)]
    return max(values), min(values)


# --------------------------------------------------------------------------------------------- sha256


def sha256_rate(seconds: float, threads: int) -> float:
    """GB/s hashed by ``threads`` threads together, 1 MiB updates."""
    buf = os.urandom(MIB)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        h = hashlib.sha256()
        while time.perf_counter() < deadline:
            for _ in range(16):
                h.update(buf)
            counts[i] += 16 * MIB

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0) / 1e9


# ----------------------------------------------------------------------------------------------- disk


def disk_write_rate(directory: Path, size: int) -> float:
    """MB/s of writing ``size`` bytes in 4 MiB writes, then fdatasync."""
    path = directory / f"limits-{uuid.uuid4().hex}"
    block = os.urandom(4 * MIB)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(size // len(block)):
            os.write(fd, block)
        os.fdatasync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return size / (time.perf_counter() - t0) / 1e6


def small_files_rate(directory: Path, seconds: float, per_dir_sync: int, threads: int = 1) -> float:
    """Files/s written as temp + write + fsync + rename by ``threads`` threads at once, with one directory
    fsync per ``per_dir_sync`` files (0: none), each group in a fresh directory as a manifest PUT's links are."""
    base = Path(tempfile.mkdtemp(prefix="limits-small-", dir=directory))
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(t: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            group = base / f"t{t}-g{n}"
            group.mkdir()
            for i in range(max(1, per_dir_sync)):
                temp = group / f".tmp-{i}"
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, b"sha256:" + b"0" * 64)
                os.fsync(fd)
                os.close(fd)
                os.replace(temp, group / f"link{i}")
                n += 1
            if per_dir_sync:
                fd = os.open(group, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        counts[t] = n

    t0 = time.perf_counter()
    try:
        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(counts) / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------- loopback


def loopback_rate(seconds: float, use_sendfile: bool, directory: Path) -> float:
    """GB/s from one thread to another over 127.0.0.1 (send of 1 MiB buffers, or sendfile of a cached file)."""
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    received = [0]

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(4 * MIB)
        view = memoryview(buf)
        while (n := conn.recv_into(view)) > 0:
            received[0] += n
        conn.close()

    reader = threading.Thread(target=receive)
    reader.start()
    sender = socket.create_connection((HOST, port))
    payload = os.urandom(MIB)
    path = directory / f"limits-sendfile-{uuid.uuid4().hex}"
    if use_sendfile:
        path.write_bytes(payload * 64)
    t0 = time.perf_counter()
    try:
        if use_sendfile:
            fd = os.open(path, os.O_RDONLY)
            try:
                while time.perf_counter() - t0 < seconds:
                    offset = 0
                    while offset < 64 * MIB:
                        offset += os.sendfile(sender.fileno(), fd, offset, 64 * MIB - offset)
            finally:
                os.close(fd)
        else:
            while time.perf_counter() - t0 < seconds:
                for _ in range(16):
                    sender.sendall(payload)
    finally:
        sender.close()
        reader.join()
        listener.close()
        path.unlink(missing_ok=True)
    return received[0] / (time.perf_counter() - t0) / 1e9


# ---------------------------------------------------------------------------------------- bare ASGI


def server_command(kind: str, port: int) -> list[str]:
    if kind == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
                "--no-access-log", "--log-level", "warning", "bench.bare_asgi:app"]
    return [sys.executable, "-m", "uvicorn", "bench.bare_asgi:app", "--host", HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


class BareServer:
    def __init__(self, kind: str, port: int, pull_file: Path) -> None:
        env = dict(os.environ, BARE_ASGI_FILE=str(pull_file))
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                             env.get("PYTHONPATH", "")])
        self.port = port
        self.proc = subprocess.Popen(server_command(kind, port), env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                Conn(HOST, port).request("GET", "/v2/", expect=(200,))
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{kind} did not start")

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        procstat.stop(self.proc, 10)


def asgi_rate(srv: BareServer, seconds: float, conc: int) -> tuple[float, float]:
    """req/s of ``GET /v2/`` at ``conc`` and the server's CPU microseconds per request."""
    req = raw_request("GET", "/v2/", f"{HOST}:{srv.port}")
    cpu0 = srv.cpu()
    res = run_load(HOST, srv.port, conc, lambda i: (req, False), seconds=seconds, expect=(200,))
    return res.rate, (srv.cpu() - cpu0) * 1e6 / max(1, res.done)


def asgi_push(srv: BareServer, size: int) -> tuple[float, float]:
    """MB/s of one PUT of ``size`` bytes whose body the app discards, and server CPU s/GB."""
    body = memoryview(os.urandom(16 * MIB))
    conn = Conn(HOST, srv.port)
    cpu0, t0 = srv.cpu(), time.perf_counter()
    conn.request("PUT", "/push", {}, [body] * (size // len(body)), size, expect=(201,))
    wall = time.perf_counter() - t0
    cpu = srv.cpu() - cpu0
    conn.close()
    return size / wall / 1e6, cpu / (size / 1e9)


def asgi_pull(srv: BareServer, size: int) -> tuple[float, float]:
    """MB/s of one GET of a ``size``-byte page-cached file, and server CPU s/GB."""
    conn = Conn(HOST, srv.port)
    cpu0, t0 = srv.cpu(), time.perf_counter()
    r = conn.request("GET", "/pull", discard=True, expect=(200,))
    wall = time.perf_counter() - t0
    cpu = srv.cpu() - cpu0
    conn.close()
    if r.length != size:
        raise RuntimeError(f"pulled {r.length} of {size} bytes")
    return size / wall / 1e6, cpu / (size / 1e9)


# ----------------------------------------------------------------------------------------------- main


def measure(directory: Path, reps: int, seconds: float, size: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}

    def record(key: str, unit: str, values: tuple[float, float], **extra: float) -> None:
        best, worst = values
        out[key] = {"value": best, "worst": worst, **extra}
        more = "".join(f", {k} {v:.3g}" for k, v in extra.items())
        print(f"  {key:<34} {best:>10,.1f} {unit:<6} (worst of {reps}: {worst:,.1f}{more})", flush=True)

    cores = os.cpu_count() or 1
    record("sha256 one core", "GB/s", best_of(reps, lambda: sha256_rate(seconds, 1)))
    record(f"sha256 {cores} cores", "GB/s", best_of(reps, lambda: sha256_rate(seconds, cores)))
    record("disk write+fdatasync", "MB/s", best_of(reps, lambda: disk_write_rate(directory, size)))
    record("small files fsync+rename, dir fsync each", "files/s",
           best_of(reps, lambda: small_files_rate(directory, seconds, 1)))
    record("small files fsync+rename c16", "files/s",
           best_of(reps, lambda: small_files_rate(directory, seconds, 0, threads=16)))
    record("loopback send/recv", "GB/s", best_of(reps, lambda: loopback_rate(seconds, False, directory)))
    record("loopback sendfile/recv", "GB/s", best_of(reps, lambda: loopback_rate(seconds, True, directory)))
    pull_file = directory / f"limits-pull-{uuid.uuid4().hex}"
    with open(pull_file, "wb") as f:
        block = os.urandom(16 * MIB)
        for _ in range(size // len(block)):
            f.write(block)
    taken: set[int] = set()
    try:
        for kind in ("uvicorn", "granian"):
            srv = BareServer(kind, free_port(PORTS.start, taken, PORTS), pull_file)
            try:
                cpu: list[float] = []

                def rate(srv: BareServer = srv, cpu: list[float] = cpu) -> float:
                    value, us = asgi_rate(srv, seconds, 64)
                    cpu.append(us)
                    return value

                record(f"{kind} bare GET /v2/ c64", "req/s", best_of(reps, rate), us_per_req=min(cpu))
                for name, probe in (("push", asgi_push), ("pull", asgi_pull)):
                    cpu = []

                    def run(srv: BareServer = srv, probe=probe, cpu: list[float] = cpu) -> float:  # noqa: ANN001
                        value, per_gb = probe(srv, size)
                        cpu.append(per_gb)
                        return value

                    record(f"{kind} bare {name} {size // MIB}MiB c1", "MB/s", best_of(reps, run),
                           cpu_s_per_gb=min(cpu))
            finally:
                srv.stop()
    finally:
        pull_file.unlink(missing_ok=True)
    return out


# which limit bounds which bench row: (section, case) -> [(limit key, how the row's unit compares)]
LIMITS_OF_ROW: dict[tuple[str, str], list[tuple[str, float]]] = {
    ("push", "mono 512MiB c1"): [("sha256 one core", 1000.0), ("disk write+fdatasync", 1.0),
                                 ("{server} bare push 512MiB c1", 1.0)],
    ("pull", "512MiB c1"): [("loopback sendfile/recv", 1000.0), ("{server} bare pull 512MiB c1", 1.0)],
    ("manifest", "GET tag c16"): [("{server} bare GET /v2/ c64", 1.0)],
    ("manifest", "PUT c16"): [("small files fsync+rename c16", 1.0 / 4)],
    ("v2", "GET /v2/ c64"): [("{server} bare GET /v2/ c64", 1.0)],
}


def fractions(rows: list[Row], limits: dict[str, dict[str, float]], server: str) -> str:
    """Moorage's figure in each bounded row as a fraction of each limit that bounds it.

    A manifest PUT writes 4 small files (its content, revision link, two tag links), so the rate of small
    files written by 16 threads, divided by 4, is its ceiling at c16 when every file is synced alone.
    """
    out = [f"Moorage as a fraction of this machine's limits (python -m bench limits; server {server}):"]
    for r in rows:
        bounds = LIMITS_OF_ROW.get((r.section, r.name))
        mine = r.results.get(B)
        if not bounds or mine is None or not mine.value:
            continue
        parts = []
        for key, scale in bounds:
            key = key.format(server=server)
            limit = limits.get(key)
            if limit:
                parts.append(f"{mine.value / (limit['value'] * scale):.0%} of {key} "
                             f"({limit['value'] * scale:,.0f} {r.unit})")
        if parts:
            out.append(f"  {r.section} {r.name}: {mine.value:,.0f} {r.unit} = " + "; ".join(parts))
    return "\n".join(out)


def load() -> dict[str, dict[str, float]] | None:
    try:
        return json.loads(limits_file().read_text())["limits"]
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench limits", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="directory on the storage disk (default: system temp)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each rate probe")
    p.add_argument("--size-mib", type=int, default=512, help="size of the disk, push and pull probes")
    args = p.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="moorage-limits-", dir=args.workdir))
    print(f"limits of this machine ({os.cpu_count()} cores), best of {args.reps}; storage {directory}")
    try:
        found = measure(directory, args.reps, args.seconds, args.size_mib * MIB)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    limits_file().parent.mkdir(parents=True, exist_ok=True)
    limits_file().write_text(json.dumps({"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "cores": os.cpu_count(), "limits": found}, indent=2) + "\n")
    print(f"wrote {limits_file()}")
    return 0
