"""Small helpers shared by the end-to-end tests: commands, ports, client checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# Reasons of every e2e test skipped for a missing client; printed loudly at the end of the run.
MISSING: list[str] = []


class CommandFailed(AssertionError):
    """A command exited non-zero; the message carries the command and its whole output."""

    def __init__(self, cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.cmd = list(cmd)
        self.proc = proc
        super().__init__(
            f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
        )


def _tail(text: str | None, limit: int = 6000) -> str:
    text = text or ""
    return text if len(text) <= limit else "...\n" + text[-limit:]


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; raise CommandFailed (with the output) when check fails."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError(
            f"command timed out after {timeout}s: {' '.join(args)}\n--- stdout ---\n{_tail(out)}"
            f"\n--- stderr ---\n{_tail(err)}"
        ) from None
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc)
    return proc


def missing_client(what: str, hint: str) -> None:
    """Skip the test loudly, or fail it when CI=true (CI must have every client)."""
    msg = f"E2E CLIENT MISSING: {what} -- {hint}"
    if IN_CI:
        pytest.fail(msg + " [CI=true: a missing client is a failure]", pytrace=False)
    MISSING.append(msg)
    pytest.skip(msg)


def require_binary(name: str, hint: str | None = None) -> str:
    """Path of an executable, or skip/fail (see missing_client)."""
    path = shutil.which(name)
    if path is None:
        missing_client(f"`{name}` not on PATH", hint or "run `bash .ci/run` (as root) to install the clients")
        raise AssertionError("unreachable")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_in(ports: range) -> int:
    """A port of ``ports`` free on both 127.0.0.1 and ::1 a moment ago, tried in random order (for a port a
    config must name before the server starts, e.g. a token realm)."""
    for port in random.sample(ports, len(ports)):
        try:
            for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def unique(prefix: str = "e2e") -> str:
    """A short unique lowercase name, valid as a repository path component."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """`sha256:<hex>` of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, size: str, purpose: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mountpoint`` (root only); skips loudly, or fails in CI, when it cannot mount."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs for the {purpose} test: {p.stderr.strip()}")
        pytest.skip(f"{purpose.upper()} TEST NOT RUN: cannot mount a tmpfs here ({p.stderr.strip()})")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def shoot(page: Any, artifacts: Path, name: str, full_page: bool = True) -> Path:
    """A screenshot of a Playwright page (the whole page, or what the viewport shows), named in the
    test's output."""
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path
