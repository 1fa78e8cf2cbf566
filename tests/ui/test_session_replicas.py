"""A UI session stamped by another process on the same database (a forked worker of this server, or a
replica) is honoured at once, not after this process's next poll of the change feed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from auth.terms import OPERATOR
from registry.config import parse
from registry.http.app import create_app
from tests.ui.conftest import csrf


def make_app(tmp_path: Path) -> TestClient:
    raw: dict[str, Any] = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}},
                           "auth": {"database": {}}, "database": {"url": f"sqlite:///{tmp_path / 'shared.db'}"},
                           "ui": {"secret": "shared-by-both-processes"}}
    app = create_app(parse(raw))
    assert app.registry.management is not None
    app.registry.management.cost = 4
    return TestClient(app, base_url="http://registry.test")


def log_in(client: TestClient, user: str, password: str) -> None:
    page = client.get("/ui/login")
    r = client.post("/ui/login", data={"username": user, "password": password, "csrf": csrf(page.text),
                                       "next": "/ui/"}, follow_redirects=False)
    assert r.status_code == 303, r.text


def account_of(client: TestClient, cookies: Any) -> int:
    client.cookies = cookies
    return client.get("/ui/account", follow_redirects=False).status_code


def test_a_session_stamped_by_another_process_is_confirmed_before_it_is_dropped(tmp_path: Path) -> None:
    with make_app(tmp_path) as a, make_app(tmp_path) as b:
        management = a.app.registry.management  # type: ignore[attr-defined]
        asyncio.run(management.create_user(OPERATOR, "alice", "alice-pw", admin=True))
        assert b.get("/ui/login").status_code == 200
        policy = b.app.registry.policy  # type: ignore[attr-defined]
        policy.confirmed = time.monotonic() + 3600  # B's poller confirmed its snapshot just now
        asyncio.run(management.create_user(OPERATOR, "bob", "bob-pw"))  # B has not seen bob yet
        log_in(a, "bob", "bob-pw")
        assert account_of(b, a.cookies) == 200  # still bob: B read the feed once and found him
        assert b.cookies.get("moorage_session") in (None, a.cookies.get("moorage_session"))

