"""``moorage token`` and ``moorage robot`` on the configured database, and the token working against the
app built from the same config."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from auth.manage import Management
from auth.terms import OPERATOR
from registry.cli import main
from registry.config import load
from registry.http.app import create_app
from storage.database import Database
from tests.auth.app_helpers import push_blob


@pytest.fixture
def config(tmp_path: Path, htpasswd_file: Path) -> str:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "auth": {"htpasswd": {"path": str(htpasswd_file)}},
    }))
    return str(path)


def moorage(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_create_list_use_revoke(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = moorage(capsys, "token", "create", "--user", "alice", "--name", "ci", "--scopes", "pull,push",
                  "--repositories", "alice/**", "--expires", "2099-01-01T00:00:00Z", "-c", config)
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("moorage_pat_") and "pull,push on alice/**" in out
    listed = moorage(capsys, "token", "list", "--user", "alice", "-c", config)
    assert "ci" in listed and "alice/**" in listed and secret not in listed
    token_id = listed.splitlines()[1].split()[0]
    with TestClient(create_app(load(config))) as client:
        assert push_blob(client, "alice/app", b"x", auth=("alice", secret))[0].status_code == 201
        assert moorage(capsys, "token", "revoke", token_id, "-c", config).startswith("revoked token")
        revoked = time.monotonic()  # another process's change: the app learns it from the change feed
        while client.get("/v2/", auth=("alice", secret)).status_code != 401:
            assert time.monotonic() - revoked < 2
            time.sleep(0.05)
    quiet = moorage(capsys, "token", "create", "--user", "bob", "--name", "x", "--scopes", "pull", "--quiet",
                    "-c", config)
    assert quiet.strip().startswith("moorage_pat_") and len(quiet.strip().splitlines()) == 1


def test_bad_input_exits_with_the_reason(config: str) -> None:
    with pytest.raises(SystemExit, match="scopes must be one of"):
        main(["token", "create", "--user", "alice", "--name", "ci", "--scopes", "push", "-c", config])
    with pytest.raises(SystemExit, match="is in the past"):
        main(["token", "create", "--user", "alice", "--name", "ci", "--scopes", "pull", "--expires",
              "2001-01-01T00:00:00Z", "-c", config])
    with pytest.raises(SystemExit, match="no access token"):
        main(["token", "revoke", "0123456789abcdef", "-c", config])


def test_robots(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}")

    async def namespace() -> None:
        await Management(db).create_namespace(OPERATOR, "payments")
        await db.close()

    asyncio.run(namespace())
    assert "robot+payments+ci: pull,push" in moorage(capsys, "robot", "add", "payments", "ci", "--actions",
                                                     "pull,push", "-c", config)
    assert "robot+payments+ci" in moorage(capsys, "robot", "list", "payments", "-c", config)
    secret = moorage(capsys, "token", "create", "--robot", "robot+payments+ci", "--name", "pipeline", "--scopes",
                     "pull,push", "--quiet", "-c", config).strip()
    assert secret.startswith("moorage_robot_")
    with TestClient(create_app(load(config))) as client:
        assert push_blob(client, "payments/api", b"x", auth=("robot+payments+ci", secret))[0].status_code == 201
    moorage(capsys, "robot", "remove", "robot+payments+ci", "-c", config)
    with pytest.raises(SystemExit, match="no robot"):
        main(["token", "list", "--robot", "robot+payments+ci", "-c", config])
