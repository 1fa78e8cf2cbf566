"""`moorage serve` with several workers (uvicorn): forked from one supervisor, one listening socket each.

Each test starts its own server on loopback (ports 15600-15699) with `http.workers: 2`, whatever the
machine's CPU count, unless it checks the default.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from registry.config import cpu_count

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_by(server_port: int, workers: list[int]) -> Counter[int]:
    """How many established connections to ``server_port`` each worker holds (/proc/net/tcp)."""
    owner = {inode: pid for pid in workers for inode in socket_inodes(pid)}
    counts: Counter[int] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        established = fields[3] == "01"
        inode = int(fields[9])
        if local_port == server_port and established and inode in owner:
            counts[owner[inode]] += 1
    return counts


def test_default_serves_with_one_worker_per_cpu(moorage: Any) -> None:
    """No `http.workers`: one process per usable CPU (a supervisor and its workers when more than one)."""
    reg = moorage({})
    assert reg.proc is not None
    workers = children(reg.proc.pid)
    expected = cpu_count()
    assert len(workers) == (expected if expected > 1 else 0), (workers, expected)
    with reg.http() as c:
        assert c.get("/v2/").status_code == 200


def burst(port: int, count: int) -> list[socket.socket]:
    """``count`` connections started at once: they wait in the accept queue together."""
    conns = []
    for _ in range(count):
        conn = socket.socket()
        conn.setblocking(False)
        try:
            conn.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        conns.append(conn)
    time.sleep(0.5)
    for conn in conns:
        conn.setblocking(True)
    return conns


def test_keep_alive_connections_spread_over_workers(moorage: Any) -> None:
    """64 keep-alive connections opened at once: each of the two workers accepts a fair share of them. Each
    worker has its own SO_REUSEPORT socket; with one shared socket the first worker to wake accepted all that
    waited (uvicorn's multiprocess mode measured 15/49 to 25/39 here)."""
    reg = moorage({"workers": 2})
    assert reg.proc is not None
    workers = children(reg.proc.pid)
    assert len(workers) == 2
    conns = burst(reg.port, 64)
    try:
        for conn in conns:
            conn.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        for conn in conns:
            assert conn.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
        counts = accepted_by(reg.port, workers)
        assert sum(counts.values()) == 64, counts
        # binomial(64, 1/2): below 16 on either side has a probability of about 1e-5
        assert min(counts[w] for w in workers) >= 16, counts
    finally:
        for conn in conns:
            conn.close()


def test_a_killed_worker_is_replaced(moorage: Any) -> None:
    reg = moorage({"workers": 2})
    assert reg.proc is not None
    first = children(reg.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = children(reg.proc.pid)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"no new worker: {children(reg.proc.pid)}")
    with reg.http() as c:
        for _ in range(20):  # new connections, spread over both
            assert c.get("/v2/", headers={"Connection": "close"}).status_code == 200
    assert re.search(r"worker 0 \(pid \d+\) was killed by signal 9: starting another", reg.log_tail()), reg.log_tail()


def test_a_taken_port_stops_the_start(moorage: Any, tmp_path: Path) -> None:
    """Another process listens on the port: exit status 3 at once, as with one process (SO_REUSEPORT must not
    let a second server join the first)."""
    reg = moorage({"workers": 2})
    assert reg.proc is not None
    second = subprocess.run([reg.executable, "serve", str(reg.config_path)], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "cannot listen on" in second.stdout + second.stderr
    assert len(children(reg.proc.pid)) == 2  # the first server is untouched


def test_workers_do_not_outlive_a_killed_supervisor(moorage: Any) -> None:
    """kill -9 of the supervisor: its workers get SIGTERM from the kernel and exit, so nothing keeps
    serving the port unsupervised."""
    reg = moorage({"workers": 2})
    assert reg.proc is not None
    workers = children(reg.proc.pid)
    reg.proc.kill()
    reg.proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"]
    assert not alive, f"workers {alive} outlived their supervisor"
