"""Start and stop the two registries under test as subprocesses with temporary filesystem or S3 storage."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import procstat
from storage import paths
from storage.digests import parse_digest

if TYPE_CHECKING:
    from bench.s3 import S3Backend

HOST = "127.0.0.1"
PORT_RANGE = range(15400, 15500)  # --ports replaces it


def free_port(start: int, taken: set[int], ports: range | None = None) -> int:
    """First port >= start in the bench's range that nobody listens on and we did not hand out."""
    ports = ports or PORT_RANGE
    for port in range(max(start, ports.start), ports.stop):
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _set_dotted(tree: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value


def _yaml(value: object, indent: int = 0) -> str:
    """Tiny YAML writer for nested dicts of scalars (keeps the bench free of a yaml dependency)."""
    pad = "  " * indent
    out = []
    for k, v in value.items():  # type: ignore[union-attr]
        if isinstance(v, dict):
            out.append(f"{pad}{k}:\n{_yaml(v, indent + 1)}")
        elif isinstance(v, bool):
            out.append(f"{pad}{k}: {'true' if v else 'false'}")
        elif isinstance(v, int | float):
            out.append(f"{pad}{k}: {v}")
        else:
            out.append(f'{pad}{k}: "{v}"')
    return "\n".join(out)


def config_yaml(port: int, root: Path, extra: dict[str, str] | None = None,
                s3: dict[str, object] | None = None) -> str:
    """Distribution-style config.yml used for both servers (Moorage accepts the same keys).

    With ``s3`` (a ``storage.s3`` section) the storage is that bucket, with redirects disabled so that blob
    GETs stream through the registry."""
    storage: dict = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}
    if s3 is not None:
        storage = {"s3": dict(s3), "redirect": {"disable": True}, "delete": {"enabled": True}}
    cfg: dict = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": storage,
        "http": {"addr": f"{HOST}:{port}"},
    }
    for key, val in (extra or {}).items():
        parsed: object = val
        if val.lower() in ("true", "false"):
            parsed = val.lower() == "true"
        elif val.isdigit():
            parsed = int(val)
        _set_dotted(cfg, key, parsed)
    return _yaml(cfg) + "\n"


@dataclass
class Server:
    """One registry process: ``cmd`` gets the config path appended."""

    name: str
    cmd: list[str]
    workdir: Path
    port: int
    extra: dict[str, str] = field(default_factory=dict)
    s3: S3Backend | None = None  # S3 mode: storage is ``bucket``/``s3root`` there
    bucket: str = ""
    s3root: str = ""
    env_drop: tuple[str, ...] = ()  # environment variables the process must not see
    env_set: dict[str, str] = field(default_factory=dict)  # and ones it gets
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.yml"
        s3 = self.s3.storage(self.bucket, self.s3root) if self.s3 is not None else None
        cfg.write_text(config_yaml(self.port, self.root, self.extra, s3))
        env = {k: v for k, v in os.environ.items() if k not in self.env_drop} | self.env_set
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*self.cmd, str(cfg)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer GET /v2/ within {timeout}s:\n{self.tail()}")

    def _answers(self) -> bool:
        try:
            c = http.client.HTTPConnection(HOST, self.port, timeout=2)
            c.request("GET", "/v2/")
            status = c.getresponse().status
            c.close()
            return status in (200, 401)
        except OSError:
            return False

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.pid) if self.alive() else 0.0

    def peak_rss(self) -> float:
        return procstat.peak_rss_mib(self.pid) if self.alive() else 0.0

    def pss(self) -> float:
        return procstat.pss_mib(self.pid) if self.alive() else 0.0

    def processes(self) -> int:
        return len(procstat.descendants(self.pid)) if self.alive() else 0

    def reset_peak(self) -> None:
        if self.alive():
            procstat.reset_peak(self.pid)

    def stop(self) -> None:
        """SIGTERM the process group we created, SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def drop_blob(self, digest: str) -> None:
        """Delete a pushed blob's data from storage (Distribution layout) to keep the run's disk use bounded."""
        rel = paths.blob_dir(parse_digest(digest)).lstrip("/")
        if self.s3 is not None:
            self.s3.delete_prefix(self.bucket, (self.s3root.strip("/") + "/" + rel + "/").lstrip("/"))
        else:
            shutil.rmtree(self.root / rel, ignore_errors=True)
