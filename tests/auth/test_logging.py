"""Passwords and tokens never reach the logs, whatever happens to them."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.auth.app_helpers import app_client, push_blob
from tests.auth.conftest import SERVICE


def test_no_secret_in_logs(tmp_path: Path, token_auth, htpasswd_file: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = ["alice-pw", "bob-pw", "wrong-secret-pw"]
    with app_client(tmp_path, token_auth) as client:
        ok = client.get("/auth/token", params={"service": SERVICE, "scope": "repository:alice/a:pull,push",
                                               "offline_token": "true"}, auth=("alice", "alice-pw"))
        secrets += [ok.json()["token"], ok.json()["refresh_token"]]
        client.get("/auth/token", params={"service": SERVICE}, auth=("alice", "wrong-secret-pw"))
        client.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "bob-pw"})
        client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": secrets[-1]})
        push_blob(client, "alice/a", b"x", headers={"Authorization": f"Bearer {secrets[3]}"})
        client.get("/v2/", headers={"Authorization": f"Bearer {secrets[3]}x"})
        client.get("/v2/", headers={"Authorization": f"Bearer {secrets[4]}"})
    with app_client(tmp_path / "b", {"htpasswd": {"path": str(htpasswd_file)}}) as client:
        client.get("/v2/", auth=("alice", "wrong-secret-pw"))
        client.get("/v2/", auth=("alice", "alice-pw"))
    assert "token issued to alice" in caplog.text  # the logs do say what happened
    assert "bearer token refused" in caplog.text
    assert "invalid credentials for user 'alice'" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
        assert secret[:40] not in caplog.text
