"""Authorization's cost: manifest GET by tag with ``auth.database`` against the htpasswd mode, interleaved.

``python -m bench access [--quick] [--users N] [--teams N] [--namespaces N] [--seconds S] [--rounds N]
[--concurrency C] [--database URL]``

Two ``moorage serve`` processes on their own storage: *htpasswd* (the puller in an htpasswd file, a rule
of ``auth.access`` letting them pull ``payments/**``) and *database* (``auth.database`` with 1,000
users, 100 teams of 10 and 500 namespaces, each granting a team a role; the puller is a ``reader`` of
``payments`` through a team).  Each pushes one image as an admin; then every round runs GET by tag with
the puller's Basic credentials at ``--concurrency`` on each server in turn (the first alternating), after
a warm-up that verifies the password once.  Reported: the median req/s and p99 of each mode, their
ratio, and the database transactions the database mode made during the measured load, from its
``moorage_database_transactions_total`` (``version``: the change feed's polls, twice a second; ``read``
and ``write``: what requests cost).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auth import htpasswd
from auth.terms import OPERATOR
from bench.loadgen import raw_request, run_load
from bench.manifests import ACCEPT, OCI_MANIFEST
from bench.servers import HOST, free_port
from registry.config import parse as parse_config
from registry.instance import build_management, open_database

PULLER = ("puller", "puller-bench-pw")
ADMIN = ("admin", "admin-bench-pw")
REPO = "payments/api"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SAMPLE = re.compile(r'^moorage_database_transactions_total\{kind="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)


@dataclass
class Shape:
    users: int
    teams: int
    namespaces: int


FULL = Shape(1000, 100, 500)
QUICK = Shape(100, 10, 50)


@dataclass
class Mode:
    """One ``moorage serve`` under test."""

    name: str
    workdir: Path
    config: dict[str, Any]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    rates: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    pulls: int = 0  # requests measured, every round
    transactions: list[dict[str, float]] = field(default_factory=list)  # per round, during the load

    @property
    def auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{PULLER[0]}:{PULLER[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def start(self, moorage: str) -> None:
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(self.config))
        with open(self.workdir / "server.log", "wb") as log:
            self.proc = subprocess.Popen([moorage, "serve", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.get("/v2/")[0] not in (200, 401):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name}: moorage serve did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def get(self, target: str, credentials: tuple[str, str] | None = None) -> tuple[int, str]:
        headers = {}
        if credentials is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            conn.close()
            return response.status, body
        except OSError:
            return 0, ""

    def counters(self) -> dict[str, float]:
        status, body = self.get("/metrics", ADMIN)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET /metrics answered {status}")
        return {kind: float(value) for kind, value in SAMPLE.findall(body)}

    def log_tail(self) -> str:
        path = self.workdir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def base_config(workdir: Path, port: int) -> dict[str, Any]:
    return {"storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
            "http": {"addr": f"{HOST}:{port}", "metrics": {"enabled": True}},
            "log": {"level": "warn", "accesslog": {"disabled": True}}}


def htpasswd_mode(workdir: Path, port: int) -> Mode:
    users = workdir / "htpasswd"
    for name, password in (ADMIN, PULLER):
        htpasswd.set_password(users, name, password, cost=4)
    config = base_config(workdir, port)
    config["auth"] = {"htpasswd": {"realm": "bench", "path": str(users)},
                      "access": {"admins": [ADMIN[0]], "rules": [
                          {"repositories": ["payments/**"], "who": [PULLER[0]], "actions": ["pull"]}]}}
    return Mode("htpasswd", workdir, config, port)


def database_mode(workdir: Path, port: int, shape: Shape, url: str | None) -> Mode:
    config = base_config(workdir, port)
    config["auth"] = {"database": {}}
    if url:
        config["database"] = {"url": url}
    populate(parse_config(config), shape)
    return Mode("database", workdir, config, port)


def populate(config: Any, shape: Shape) -> None:
    """The organisation: users u0000..., teams of 10 (t000...), namespaces ns000... each granting a team
    a role; the admin, and the puller as a reader of ``payments`` through team ``pullers``."""
    database = open_database(config)
    assert database is not None
    management = build_management(config, database)
    management.cost = 4  # bcrypt's cost only slows the set-up: passwords are verified once, then remembered
    roles = ("reader", "developer", "maintainer", "owner")

    async def run() -> None:
        await management.create_user(OPERATOR, ADMIN[0], ADMIN[1], admin=True)
        await management.create_user(OPERATOR, PULLER[0], PULLER[1])
        for i in range(shape.users - 2):
            await management.create_user(OPERATOR, f"u{i:04d}", f"pw-{i}")
        for t in range(shape.teams):
            members = [f"u{(t * 10 + k) % (shape.users - 2):04d}" for k in range(10)]
            await management.create_team(OPERATOR, f"t{t:03d}", members)
        for n in range(shape.namespaces - 1):
            await management.create_namespace(OPERATOR, f"ns{n:03d}")
            await management.set_member(OPERATOR, f"ns{n:03d}", "team", f"t{n % shape.teams:03d}", roles[n % 4])
        await management.create_team(OPERATOR, "pullers", [PULLER[0]])
        await management.create_namespace(OPERATOR, "payments")
        await management.set_member(OPERATOR, "payments", "team", "pullers", "reader")
        await database.close()

    asyncio.run(run())


def push_image(mode: Mode) -> None:
    """The image to pull (a config and a 2 KiB layer), pushed as the admin, read back as the puller."""
    admin = {"Authorization": "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()}
    conn = http.client.HTTPConnection(HOST, mode.port, timeout=30)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    descriptors = []
    for media_type, data in ((OCI_CONFIG, config.encode()), (OCI_LAYER, os.urandom(2048))):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        conn.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", body=data, headers=admin)
        expect(conn.getresponse(), 201, f"{mode.name}: blob upload")
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[0],
                           "layers": descriptors[1:]})
    conn.request("PUT", f"/v2/{REPO}/manifests/1.0", body=manifest, headers={**admin, "Content-Type": OCI_MANIFEST})
    expect(conn.getresponse(), 201, f"{mode.name}: manifest PUT")
    conn.close()
    status, _ = mode.get(f"/v2/{REPO}/manifests/1.0", PULLER)
    if status != 200:
        raise RuntimeError(f"{mode.name}: the puller's GET answered {status}")


def expect(response: http.client.HTTPResponse, status: int, what: str) -> None:
    body = response.read()
    if response.status != status:
        raise RuntimeError(f"{what} answered {response.status}: {body[:300]!r}")


def measure(mode: Mode, concurrency: int, seconds: float) -> None:
    """One round of GET by tag as the puller; its rate, p99 and the database transactions meanwhile."""
    request = raw_request("GET", f"/v2/{REPO}/manifests/1.0", f"{HOST}:{mode.port}", {"Accept": ACCEPT, **mode.auth})
    run_load(HOST, mode.port, concurrency, lambda i: (request, False), total=200, expect=(200,))  # warm
    before = mode.counters() if mode.name == "database" else {}
    result = run_load(HOST, mode.port, concurrency, lambda i: (request, False), seconds=seconds, expect=(200,))
    if result.errors:
        raise RuntimeError(f"{mode.name}: {result.errors} failed requests: {dict(result.statuses)}")
    if before:
        after = mode.counters()
        mode.transactions.append({kind: after.get(kind, 0) - before.get(kind, 0) for kind in after})
    mode.rates.append(result.rate)
    mode.pulls += result.done
    mode.p99s.append(result.pct(0.99))


def report(modes: list[Mode], shape: Shape, args: argparse.Namespace) -> str:
    base, database = modes
    lines = [f"manifest GET by tag c{args.concurrency}, {args.seconds:g} s x {args.rounds} rounds (medians); "
             f"database: {shape.users} users, {shape.teams} teams, {shape.namespaces} namespaces "
             f"({database.config.get('database', {}).get('url', 'SQLite beside the data')})",
             f"{'mode':<10} {'req/s':>9} {'p99 ms':>8}"]
    for mode in modes:
        lines.append(f"{mode.name:<10} {statistics.median(mode.rates):>9.0f} {statistics.median(mode.p99s):>8.2f}")
    ratio = statistics.median(database.rates) / statistics.median(base.rates)
    lines.append(f"database / htpasswd: {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
    totals = {kind: sum(round_.get(kind, 0) for round_ in database.transactions) for kind in ("version", "read",
                                                                                                "write")}
    lines.append(f"database transactions during {database.pulls} warm pulls: read {totals['read']:.0f}, write "
                 f"{totals['write']:.0f}, version {totals['version']:.0f} (the change feed's polls, 2/s)")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench access", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 users, 10 teams, 50 namespaces; 1 s rounds")
    p.add_argument("--users", type=int, help="users in the database (default 1000, quick 100)")
    p.add_argument("--teams", type=int, help="teams of 10 (default 100, quick 10)")
    p.add_argument("--namespaces", type=int, help="namespaces (default 500, quick 50)")
    p.add_argument("--seconds", type=float, help="each measured load (default 5, quick 1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--database", metavar="URL", help="database.url of the database mode (default: SQLite)")
    p.add_argument("--moorage", default=shutil.which("moorage") or "moorage", help="the moorage executable")
    p.add_argument("--workdir", type=Path, help="parent of the temporary data (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the data and logs")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    default = QUICK if args.quick else FULL
    shape = Shape(args.users or default.users, args.teams or default.teams, args.namespaces or default.namespaces)
    if shape.users < 12 or shape.teams < 1 or shape.namespaces < 2:
        print("python -m bench access: at least 12 users, 1 team and 2 namespaces", file=sys.stderr)
        return 2
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    top = Path(tempfile.mkdtemp(prefix="moorage-bench-access-", dir=args.workdir))
    taken: set[int] = set()
    modes: list[Mode] = []
    try:
        for name in ("htpasswd", "database"):
            (top / name).mkdir()
        started = time.monotonic()
        modes = [htpasswd_mode(top / "htpasswd", free_port(15400, taken)),
                 database_mode(top / "database", free_port(15400, taken), shape, args.database)]
        print(f"database populated in {time.monotonic() - started:.1f} s", file=sys.stderr)
        for mode in modes:
            mode.start(args.moorage)
            push_image(mode)
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                measure(mode, args.concurrency, args.seconds)
        print(report(modes, shape, args))
        return 0
    finally:
        for mode in modes:
            mode.stop()
        if args.keep:
            print(f"kept {top}", file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
