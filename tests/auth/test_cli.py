"""``moorage user ...`` and ``moorage auth keygen`` through the real ``moorage`` entry point."""

from __future__ import annotations

import asyncio
import io
import stat
from pathlib import Path

import jwt
import pytest

from auth import htpasswd, keys
from auth.htpasswd import Htpasswd
from auth.verifier import TokenVerifier
from registry.cli import main
from tests.auth.conftest import ISSUER, SERVICE, claims, der_b64


def run(monkeypatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_user_lifecycle(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "htpasswd"
    assert run(monkeypatch, ["user", "add", "alice", "--htpasswd", str(path), "--cost", "4"], "s3cret\n") == 0
    assert run(monkeypatch, ["user", "add", "bob", "--htpasswd", str(path), "--cost", "4"], "b\n") == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = Htpasswd(path)
    assert asyncio.run(users.check("alice", "s3cret"))
    capsys.readouterr()
    assert run(monkeypatch, ["user", "list", "--htpasswd", str(path)]) == 0
    assert capsys.readouterr().out.split() == ["alice", "bob"]
    assert run(monkeypatch, ["user", "passwd", "alice", "--htpasswd", str(path), "--cost", "4"], "new\n") == 0
    assert asyncio.run(users.check("alice", "new")) and not asyncio.run(users.check("alice", "s3cret"))
    assert run(monkeypatch, ["user", "remove", "bob", "--htpasswd", str(path)]) == 0
    assert htpasswd.user_names(path) == ["alice"]
    assert "s3cret" not in path.read_text() and "new" not in path.read_text()


def test_user_errors(tmp_path: Path, monkeypatch) -> None:
    path = str(tmp_path / "htpasswd")
    with pytest.raises(SystemExit, match="no user 'ghost'"):
        run(monkeypatch, ["user", "passwd", "ghost", "--htpasswd", path], "x\n")
    with pytest.raises(SystemExit, match="no user 'ghost'"):
        run(monkeypatch, ["user", "remove", "ghost", "--htpasswd", path])
    with pytest.raises(SystemExit, match="empty password"):
        run(monkeypatch, ["user", "add", "alice", "--htpasswd", path], "\n")
    with pytest.raises(SystemExit, match="reserved"):
        run(monkeypatch, ["user", "add", "anonymous", "--htpasswd", path], "pw\n")
    with pytest.raises(SystemExit, match="give --htpasswd FILE or --config"):
        run(monkeypatch, ["user", "list"])
    with pytest.raises(SystemExit):  # no way to pass a password on the command line
        run(monkeypatch, ["user", "add", "alice", "pw", "--htpasswd", path])
    with pytest.raises(SystemExit):
        run(monkeypatch, ["user", "add", "alice", "--password", "pw", "--htpasswd", path])


def test_user_file_from_the_config(tmp_path: Path, monkeypatch, capsys) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"auth:\n  htpasswd:\n    realm: r\n    path: {tmp_path / 'users'}\n")
    assert run(monkeypatch, ["user", "add", "carol", "-c", str(config), "--cost", "4"], "pw\n") == 0
    assert htpasswd.user_names(tmp_path / "users") == ["carol"]
    config.write_text(f"auth:\n  tokenserver:\n    htpasswd: {tmp_path / 'ts-users'}\n")
    assert run(monkeypatch, ["user", "add", "dave", "-c", str(config), "--cost", "4"], "pw\n") == 0
    assert htpasswd.user_names(tmp_path / "ts-users") == ["dave"]
    config.write_text("auth: {}\n")
    with pytest.raises(SystemExit, match="no auth.htpasswd.path"):
        run(monkeypatch, ["user", "list", "-c", str(config)])


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_keygen_writes_a_key_and_a_certificate_that_verify_tokens(tmp_path: Path, monkeypatch, alg) -> None:
    key_path, cert_path = tmp_path / "t.key", tmp_path / "t.crt"
    argv = ["auth", "keygen", "--alg", alg, "--key", str(key_path), "--cert", str(cert_path)]
    assert run(monkeypatch, argv) == 0
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = keys.load_private_key(key_path, "k")
    assert keys.algorithm_for(key) == alg
    certs = keys.load_certificates(cert_path, "c")
    token = jwt.encode(claims(), key, algorithm=alg, headers={"x5c": [der_b64(certs[0])]})
    assert TokenVerifier(ISSUER, SERVICE, certs).verify(token).subject == "alice"
    with pytest.raises(SystemExit, match="exists"):
        run(monkeypatch, argv)
    old = key_path.read_bytes()
    assert run(monkeypatch, [*argv, "--force"]) == 0
    assert key_path.read_bytes() != old


def test_keygen_refuses_unknown_algorithms(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(SystemExit):
        run(monkeypatch, ["auth", "keygen", "--alg", "HS256", "--key", str(tmp_path / "k")])
    assert not (tmp_path / "k").exists()
