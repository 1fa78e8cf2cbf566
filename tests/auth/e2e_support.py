"""Auth set-ups shared by the real-client tests (tests/e2e/test_auth_*.py): key, certificate,
htpasswd and the ``auth`` config sections for htpasswd and for token auth with the built-in server."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from auth import htpasswd, keygen
from tests.e2e.clients import Docker
from tests.e2e.helpers import free_port_in, run

PORTS = range(15100, 15200)
SERVICE = "moorage-e2e"
ISSUER = "moorage-e2e-issuer"
USERS = {"alice": "alice-e2e-pw", "bob": "bob-e2e-pw"}
ALICE, BOB = f"alice:{USERS['alice']}", f"bob:{USERS['bob']}"  # as --creds / --user take them
RULES: dict[str, Any] = {
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["public/**"], "who": ["alice"], "actions": ["*"]},
        {"repositories": ["public/**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ],
}


def auth_port() -> int:
    """A port of the auth tests' range free on 127.0.0.1 and ::1 (a token realm names it up front)."""
    return free_port_in(PORTS)


@dataclass(frozen=True)
class AuthFiles:
    key: Path
    cert: Path
    htpasswd: Path

    def basic(self) -> dict[str, Any]:
        return {"htpasswd": {"realm": "moorage-e2e", "path": str(self.htpasswd)}, "access": RULES}

    def token(self, realm: str) -> dict[str, Any]:
        return {
            "token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(self.cert)},
            "tokenserver": {"key": str(self.key), "certificate": str(self.cert), "htpasswd": str(self.htpasswd)},
            "access": RULES,
        }


def write_auth_files(directory: Path) -> AuthFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = AuthFiles(directory / "token.key", directory / "token.crt", directory / "htpasswd")
    keygen.write_keypair(files.key, files.cert)
    for user, password in USERS.items():
        htpasswd.set_password(files.htpasswd, user, password, cost=4)
    return files


def login(docker: Docker, host: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    return run(
        [docker.binary, "login", host, "-u", user, "--password-stdin"],
        env=docker.env,
        input=password + "\n",
        check=False,
        timeout=120,
    )


def output(p: subprocess.CompletedProcess[str]) -> str:
    return (p.stdout + p.stderr).lower()


REFUSAL_WORDS = (
    "denied", "unauthorized", "forbidden", "insufficient_scope", "no basic auth credentials", "invalid username",
    "http 403 response",  # docker on a 403 to a HEAD (its config blob's check), which has no body to read
)
BROKEN_WORDS = ("eof", "connection reset", "broken pipe", " 500 ", "(500", "internal server error")


def assert_refused(p: subprocess.CompletedProcess[str]) -> None:
    """The client failed and said why in auth terms, not with a broken connection or a server error."""
    text = output(p)
    assert p.returncode != 0, text
    assert any(w in text for w in REFUSAL_WORDS), text
    assert not any(w in text for w in BROKEN_WORDS), text


@contextlib.contextmanager
def run_token_server(moorage_bin: str, files: AuthFiles, workdir: Path,
                     tls: dict[str, str] | None = None, ca: Path | None = None) -> Iterator[str]:
    """`moorage token-server CONFIG` on a port of the range until the block ends; yields its URL."""
    port = auth_port()
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}/auth/token"
    auth = files.token(url)
    auth["tokenserver"].update({"addr": f"127.0.0.1:{port}", **({"tls": tls} if tls else {})})
    config = workdir / "token-server.yml"
    config.write_text(yaml.safe_dump({"version": 0.1, "auth": auth}))
    log_path = workdir / "token-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([moorage_bin, "token-server", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                verify = ssl.create_default_context(cafile=str(ca)) if ca else True
                if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"token server did not start:\n{log_path.read_text()}"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
