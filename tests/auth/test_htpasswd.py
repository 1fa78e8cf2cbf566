"""The htpasswd file: parsing, checking, reloading, editing."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import bcrypt
import pytest

from auth import htpasswd
from auth.htpasswd import Htpasswd
from tests.auth.conftest import bcrypt_line


def check(users: Htpasswd, user: str, password: str) -> bool:
    return asyncio.run(users.check(user, password))


def test_right_password_passes_wrong_fails(htpasswd_file: Path) -> None:
    users = Htpasswd(htpasswd_file)
    assert check(users, "alice", "alice-pw")
    assert not check(users, "alice", "bob-pw")
    assert not check(users, "alice", "")
    assert not check(users, "nobody", "alice-pw")


def test_apache_2y_hashes_are_accepted(tmp_path: Path) -> None:
    line = bcrypt_line("carol", "pw").replace("$2b$", "$2y$", 1)
    (tmp_path / "h").write_text(line + "\n")
    assert check(Htpasswd(tmp_path / "h"), "carol", "pw")


def test_non_bcrypt_entries_comments_and_junk_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "h").write_text(
        "# comment\n\nmd5:$apr1$abc$def\nsha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nplain:secret\nnocolon\n"
        + bcrypt_line("ok", "pw") + "\n"
    )
    users = Htpasswd(tmp_path / "h")
    assert htpasswd.user_names(tmp_path / "h") == ["ok"]
    assert not check(users, "plain", "secret")
    assert not check(users, "sha", "password")


def test_first_entry_of_a_duplicated_user_wins(tmp_path: Path) -> None:
    (tmp_path / "h").write_text(bcrypt_line("u", "first") + "\n" + bcrypt_line("u", "second") + "\n")
    users = Htpasswd(tmp_path / "h")
    assert check(users, "u", "first")
    assert not check(users, "u", "second")


def test_unknown_user_costs_one_bcrypt_like_a_known_one(htpasswd_file: Path, monkeypatch) -> None:
    users = Htpasswd(htpasswd_file)
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    assert not check(users, "nobody", "whatever")
    assert not check(users, "alice", "wrong")
    assert len(calls) == 2
    # same cost as the real entries, so timing does not tell whether the user exists
    assert htpasswd.cost_of(calls[0]) == htpasswd.cost_of(calls[1]) == 4


def test_password_longer_than_bcrypt_limit_is_refused_not_truncated(tmp_path: Path) -> None:
    password = "p" * 72
    (tmp_path / "h").write_text(bcrypt_line("u", password) + "\n")
    users = Htpasswd(tmp_path / "h")
    assert check(users, "u", password)
    assert not check(users, "u", password + "extra")


def test_file_is_reread_when_it_changes(htpasswd_file: Path) -> None:
    users = Htpasswd(htpasswd_file)
    assert check(users, "alice", "alice-pw")
    htpasswd.set_password(htpasswd_file, "alice", "new-pw", cost=4)
    assert not check(users, "alice", "alice-pw")  # also drops the remembered verification
    assert check(users, "alice", "new-pw")
    htpasswd.remove_user(htpasswd_file, "alice")
    assert not check(users, "alice", "new-pw")
    assert htpasswd.user_names(htpasswd_file) == ["bob"]


def test_missing_file_means_nobody_logs_in(tmp_path: Path, caplog) -> None:
    path = tmp_path / "h"
    path.write_text(bcrypt_line("u", "pw") + "\n")
    users = Htpasswd(path)
    path.unlink()
    assert not check(users, "u", "pw")
    assert "unreadable" in caplog.text
    path.write_text(bcrypt_line("u", "pw") + "\n")
    assert check(users, "u", "pw")


def test_tag_changes_with_the_password(htpasswd_file: Path) -> None:
    users = Htpasswd(htpasswd_file)
    before = users.tag("alice")
    htpasswd.set_password(htpasswd_file, "alice", "other", cost=4)
    assert before and users.tag("alice") not in (None, before)
    assert users.tag("nobody") is None


def test_set_password_adds_and_replaces_keeping_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_text("# keep me\n" + bcrypt_line("bob", "b") + "\n")
    assert htpasswd.set_password(path, "alice", "a", cost=4) is False
    assert htpasswd.set_password(path, "alice", "a2", cost=4) is True
    lines = path.read_text().splitlines()
    assert lines[0] == "# keep me" and len(lines) == 3
    users = Htpasswd(path)
    assert check(users, "alice", "a2") and check(users, "bob", "b")


def test_new_file_is_private_and_existing_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "h"
    htpasswd.set_password(path, "alice", "a", cost=4)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o640)
    htpasswd.set_password(path, "bob", "b", cost=4)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["h"]  # no temporary files left behind


@pytest.mark.parametrize("name", ["", "a:b", "a b", "#x", "anonymous", "authenticated"])
def test_bad_user_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        htpasswd.set_password(tmp_path / "h", name, "pw", cost=4)
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("password", ["", "x" * 73])
def test_unusable_passwords_are_refused(tmp_path: Path, password: str) -> None:
    with pytest.raises(ValueError, match="password"):
        htpasswd.set_password(tmp_path / "h", "u", password, cost=4)


def test_remove_reports_whether_the_user_existed(htpasswd_file: Path) -> None:
    assert htpasswd.remove_user(htpasswd_file, "alice") is True
    assert htpasswd.remove_user(htpasswd_file, "alice") is False
    assert htpasswd.user_names(htpasswd_file) == ["bob"]


def test_unknown_user_and_wrong_password_take_about_as_long(tmp_path: Path) -> None:
    """Measured, not just counted: a missing dummy check would make unknown users ~1000x faster."""
    (tmp_path / "h").write_text(bcrypt_line("alice", "pw", cost=8) + "\n")
    users = Htpasswd(tmp_path / "h")

    samples: dict[str, list[float]] = {"nobody": [], "alice": []}
    for i in range(9):  # interleaved, in CPU time (all threads): other processes' load does not skew it
        for user, taken in samples.items():
            start = time.process_time()
            assert not check(users, user, f"wrong-{i}")
            taken.append(time.process_time() - start)
    nobody, alice = (sorted(taken)[len(taken) // 2] for taken in samples.values())
    ratio = nobody / alice
    assert 0.5 < ratio < 2.0, ratio
