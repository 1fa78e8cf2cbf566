"""A throw-away PostgreSQL 15 (Debian's ``postgresql``) for the tests: initdb into a temporary directory,
``postgres`` as a child process (as the ``postgres`` user when the tests run as root: the server refuses
root), durability off.  One server per test session; each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PGBIN = Path("/usr/lib/postgresql/15/bin")
SETTINGS = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "wal_level": "minimal",
    "max_wal_senders": "0", "shared_buffers": "32MB", "max_connections": "200", "log_min_messages": "warning",
}


def available() -> bool:
    return (PGBIN / "postgres").exists() and (PGBIN / "initdb").exists() and shutil.which("psql") is not None


def as_postgres() -> dict[str, object]:
    """Run as the ``postgres`` user when root (the server refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``url(db)`` is a ``postgresql://`` URL over TCP with a password (scram), as a replica would use."""

    user, password = "moorage", "moorage-pw"

    def __init__(self) -> None:
        self.port = 0
        self.dir: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    def start(self) -> PostgresServer:
        self.dir = tempfile.mkdtemp(prefix="pgmoor.")  # short: unix socket paths are limited to ~107 bytes
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C.UTF-8"}
        data = os.path.join(self.dir, "data")
        subprocess.run([str(PGBIN / "initdb"), "-D", data, "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
                        "--no-instructions"], check=True, env=env, cwd=self.dir, capture_output=True,
                       **as_postgres())  # type: ignore[call-overload]
        self.port = free_port()
        args = [str(PGBIN / "postgres"), "-D", data, "-p", str(self.port), "-k", self.dir,
                "-c", "listen_addresses=127.0.0.1"]
        for key, value in SETTINGS.items():
            args += ["-c", f"{key}={value}"]
        log = open(os.path.join(self.dir, "server.log"), "wb")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen(args, env=env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                     **as_postgres())  # type: ignore[call-overload]
        self._wait_ready(os.path.join(data, "postmaster.pid"))
        self.psql(f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{self.password}'")
        return self

    def _wait_ready(self, pidfile: str, timeout: float = 60.0) -> None:
        """Line 8 of postmaster.pid says ``ready`` once connections are accepted (what pg_ctl -w polls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log_tail()}")
            try:
                lines = Path(pidfile).read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"postgres not ready:\n{self.log_tail()}")

    def psql(self, *statements: str, db: str = "postgres") -> str:
        """SQL as the superuser over the unix socket."""
        args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(self.port),
                "-U", "postgres", "-d", db, "-At"]
        for statement in statements:
            args += ["-c", statement]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=60).stdout

    def create_database(self) -> str:
        """A new empty database owned by the test role; its URL."""
        name = f"t{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def pause(self) -> None:
        """SIGSTOP to the postmaster, then to every backend (each runs in a session of its own):
        connections stay open and nothing answers, as with a stalled database."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)  # first: no new backend is forked meanwhile
        for pid in self._children():
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        for pid in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.proc.send_signal(signal.SIGCONT)

    def _children(self) -> list[int]:
        assert self.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "".join(Path(str(self.dir), "server.log").read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
