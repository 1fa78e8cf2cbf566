"""Registry server processes for the e2e tests: `moorage serve` and Distribution 2.8.2."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from registry.http.server import split_addr
from tests.loopback import Listening

from .helpers import free_port

MOORAGE = "moorage"
DISTRIBUTION = "distribution"


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `base` with `extra` merged in recursively (dicts merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def moorage_executable() -> str | None:
    """The `moorage` console script: beside this interpreter first, then on PATH."""
    beside = Path(sys.executable).with_name("moorage")
    if beside.exists():
        return str(beside)
    return shutil.which("moorage")


def distribution_executable() -> str | None:
    """Debian's `docker-registry` (CNCF Distribution 2.8.x)."""
    return shutil.which("docker-registry")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (from /proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def owns_port(pgid: int, port: int) -> bool:
    """Whether a process of group `pgid` listens on `port` (True when /proc cannot tell)."""
    if not Path("/proc/net/tcp").exists():
        return True
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


@dataclass
class RegistryProcess(Listening):
    """One registry server process on loopback, with its config, data root and log."""

    kind: str
    port: int
    root: Path
    workdir: Path
    config: dict[str, Any]
    executable: str
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    ca_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def debug_port(self) -> int | None:
        """The port of `http.debug.addr`, when the config has one."""
        addr = (self.config.get("http") or {}).get("debug", {}).get("addr")
        return split_addr(str(addr))[1] if addr else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def ref(self, repo: str, tag_or_digest: str | None = None) -> str:
        """An image reference on this registry: HOST/REPO[:TAG|@DIGEST]."""
        if tag_or_digest is None:
            return f"{self.host}/{repo}"
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def command(self) -> list[str]:
        return [self.executable, "serve", str(self.config_path)]

    def start(self, timeout: float = 30) -> RegistryProcess:
        """Write the config, start the process and wait until `GET /v2/` answers (and the debug listener
        listens, when one is configured: worker 0 opens it, possibly after another worker answers)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child
        log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        verify: bool | str = str(self.ca_file) if self.ca_file else False
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.proc.returncode} during start-up "
                    f"({' '.join(self.command())}); log:\n{self.log_tail()}"
                )
            try:
                r = httpx.get(self.url + "/v2/", timeout=2, verify=verify)
                # answered -- by our process, not by another that holds the port we failed to bind
                if r.status_code in (200, 401) and owns_port(self.proc.pid, self.port):
                    if self.debug_port is None or owns_port(self.proc.pid, self.debug_port):
                        return
                    last = f"debug listener not on port {self.debug_port} yet"
                else:
                    last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer GET /v2/ within {timeout}s ({last}); log:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> RegistryProcess:
        """Stop and start again on the same port, config and data."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client with this registry as base URL (caller closes it)."""
        verify: bool | str = str(self.ca_file) if self.ca_file else False
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, verify=verify, **kwargs)


def moorage_config(port: int, root: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Distribution-style config for `moorage serve`, with `extra` merged in."""
    base: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info"},
        "http": {"addr": f"127.0.0.1:{port}"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
    }
    return deep_merge(base, extra)


def distribution_config(port: int, root: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config for Distribution 2.8.2 (`docker-registry serve`), with `extra` merged in."""
    base: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "e2e-not-secret"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
    }
    return deep_merge(base, extra)


def make_server(
    kind: str,
    executable: str,
    workdir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    root: Path | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    scheme: str | None = None,
    ca_file: Path | None = None,
) -> RegistryProcess:
    """A not yet started RegistryProcess of `kind` (MOORAGE or DISTRIBUTION)."""
    port = port or free_port()
    root = root or workdir / "data"
    build = moorage_config if kind == MOORAGE else distribution_config
    cfg = build(port, root, config)
    addr = str(cfg.get("http", {}).get("addr", ""))
    if addr.rpartition(":")[2].isdigit():  # the caller's http.addr wins
        port = int(addr.rpartition(":")[2])
    if scheme is None:
        scheme = "https" if cfg.get("http", {}).get("tls") else "http"
    return RegistryProcess(
        kind=kind,
        port=port,
        root=root,
        workdir=workdir,
        config=cfg,
        executable=executable,
        env=dict(env or {}),
        scheme=scheme,
        ca_file=ca_file,
    )


class ServerFactory(Protocol):
    """The `start_moorage` / `start_distribution` / `start_registry` fixtures' callable."""

    def __call__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        root: Path | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        scheme: str | None = None,
        ca_file: Path | None = None,
        start: bool = True,
    ) -> RegistryProcess: ...
