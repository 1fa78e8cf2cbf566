"""``moorage user|team|namespace`` on the configured database, through the real entry point; and ``gc``,
``du``, ``retention`` and ``serve`` taking ``-c CONFIG`` as well as a positional config."""

from __future__ import annotations

import io
from pathlib import Path

import bcrypt
import pytest

from auth.policy import PolicySnapshot
from registry.cli import main
from storage.database import Database
from storage.database.identity import load_policy


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\nauth:\n  database: {{}}\n")
    return path


def policy(tmp_path: Path) -> PolicySnapshot:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}")
    try:
        return db.read_sync(lambda conn: PolicySnapshot(load_policy(conn)))
    finally:
        db.close_sync()


def test_bootstrap_an_organisation(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    c = ["-c", str(config)]
    assert run(monkeypatch, ["user", "add", "alice", "--admin", "--email", "alice@example.com", *c], "alice-pw\n") == 0
    assert run(monkeypatch, ["user", "add", "bob", *c], "bob-pw\n") == 0
    assert run(monkeypatch, ["team", "add", "payments-devs", *c]) == 0
    assert run(monkeypatch, ["team", "member", "add", "payments-devs", "bob", *c]) == 0
    assert run(monkeypatch, ["namespace", "add", "payments", *c]) == 0
    assert run(monkeypatch, ["namespace", "add", "public-images", "--public", *c]) == 0
    assert run(monkeypatch, ["namespace", "grant", "payments", "--team", "payments-devs", "developer", *c]) == 0
    snapshot = policy(tmp_path)
    assert snapshot.actions("bob", "payments/api") == {"pull", "push"}
    assert snapshot.actions(None, "public-images/x") == {"pull"}
    assert snapshot.is_admin("alice") and snapshot.users["alice"].email == "alice@example.com"
    assert bcrypt.checkpw(b"bob-pw", snapshot.users["bob"].password.encode())
    capsys.readouterr()
    assert run(monkeypatch, ["namespace", "show", "payments", *c]) == 0
    assert "team payments-devs: developer" in capsys.readouterr().out
    assert run(monkeypatch, ["user", "list", *c]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["alice (admin)", "bob"]
    assert run(monkeypatch, ["namespace", "revoke", "payments", "--team", "payments-devs", *c]) == 0
    assert run(monkeypatch, ["user", "disable", "bob", *c]) == 0
    snapshot = policy(tmp_path)
    assert snapshot.actions("bob", "payments/api") == frozenset() and snapshot.users["bob"].disabled
    assert run(monkeypatch, ["user", "enable", "bob", *c]) == 0
    assert run(monkeypatch, ["user", "passwd", "bob", *c], "new-pw\n") == 0
    assert bcrypt.checkpw(b"new-pw", policy(tmp_path).users["bob"].password.encode())
    assert run(monkeypatch, ["team", "member", "remove", "payments-devs", "bob", *c]) == 0
    assert run(monkeypatch, ["user", "remove", "bob", *c]) == 0
    assert run(monkeypatch, ["namespace", "remove", "payments", *c]) == 0
    assert run(monkeypatch, ["team", "remove", "payments-devs", *c]) == 0
    snapshot = policy(tmp_path)
    assert set(snapshot.users) == {"alice"} and set(snapshot.namespaces) == {"alice", "public-images"}
    assert not snapshot.teams


def test_refusals_are_one_line_and_exit_1(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys) -> None:
    c = ["-c", str(config)]
    assert run(monkeypatch, ["user", "add", "alice", "--admin", *c], "pw\n") == 0
    cases = [
        (["user", "remove", "alice", *c], "last admin"),
        (["user", "disable", "alice", *c], "last admin"),
        (["user", "add", "a/b", *c], "invalid user name"),
        (["namespace", "grant", "ghost", "--user", "alice", "reader", *c], "no namespace 'ghost'"),
        (["namespace", "add", "payments", *c], None),
        (["namespace", "grant", "payments", "--user", "alice", "wizard", *c], "unknown role 'wizard'"),
        (["namespace", "grant", "payments", "--user", "nobody", "reader", *c], "no user 'nobody'"),
        (["team", "member", "add", "ghosts", "alice", *c], "no team 'ghosts'"),
        (["user", "add", "alice", *c], "exists"),
    ]
    for argv, message in cases:
        code = run(monkeypatch, argv, "pw\n")
        err = capsys.readouterr().err
        if message is None:
            assert code == 0, err
        else:
            assert code == 1 and message in err and "Traceback" not in err, (argv, err)
    with pytest.raises(SystemExit):  # a role is required, and --user or --team, not both
        run(monkeypatch, ["namespace", "grant", "payments", "--user", "alice", "--team", "x", "reader", *c])


def test_import_keeps_passwords_working(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys) -> None:
    users = tmp_path / "htpasswd"
    users.write_text("".join(f"{name}:{bcrypt.hashpw(f'{name}-pw'.encode(), bcrypt.gensalt(4)).decode()}\n"
                             for name in ("carol", "dave", "Bad")))
    assert run(monkeypatch, ["user", "import", "--htpasswd", str(users), "-c", str(config)]) == 0
    out = capsys.readouterr()
    assert "imported 2 users" in out.out and "skipped Bad" in out.err
    snapshot = policy(tmp_path)
    for name in ("carol", "dave"):
        assert bcrypt.checkpw(f"{name}-pw".encode(), snapshot.users[name].password.encode())


def test_without_auth_database_the_htpasswd_file_is_used_as_today(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"auth:\n  htpasswd:\n    path: {tmp_path / 'users'}\n")
    assert run(monkeypatch, ["user", "add", "erin", "-c", str(config), "--cost", "4"], "pw\n") == 0
    assert (tmp_path / "users").read_text().startswith("erin:$2b$04$")
    with pytest.raises(SystemExit, match="need the database"):
        run(monkeypatch, ["user", "add", "frank", "--admin", "-c", str(config)], "pw\n")
    with pytest.raises(SystemExit, match="needs the database"):
        run(monkeypatch, ["user", "disable", "erin", "-c", str(config)])


def test_s3_storage_without_a_database_url_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yml"
    config.write_text("storage:\n  s3:\n    bucket: b\n    region: us-east-1\nauth:\n  database: {}\n")
    with pytest.raises(SystemExit, match="set database.url"):
        run(monkeypatch, ["team", "add", "x", "-c", str(config)])


def test_gc_du_and_retention_take_the_config_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    for argv in (["gc", str(config), "--dry-run"], ["gc", "-c", str(config), "--dry-run"],
                 ["du", str(config), "x/**"], ["du", "-c", str(config), "x/**"], ["du", "-c", str(config)]):
        assert run(monkeypatch, argv) == 0, argv
    assert run(monkeypatch, ["retention", "-c", str(config)]) == 2
    assert "no storage.maintenance.retention.policies" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(monkeypatch, ["gc", str(config), "-c", str(config)])
    assert not (tmp_path / "data" / "moorage.db").exists(), "the database was created though nothing needed it"
