"""The brute-force brake (issue 14, defect 7): wrong passwords from one address for one user are slowed
down with 429 TOOMANYREQUESTS and Retry-After, through Basic and through the token endpoint; other
users behind that address, and the user from elsewhere, are not locked out; success resets it."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from auth.base import MAX_USER_NAME
from auth.brake import LoginBrake, TooManyAttempts
from auth.shared_failures import SharedFailures
from registry.config import parse
from registry.http.app import create_app
from storage.database import Database
from tests.auth.conftest import API_RULES


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_at(auth: dict[str, Any], root: Path, address: str) -> TestClient:
    config = parse({"storage": {"filesystem": {"rootdirectory": str(root)}}, "auth": auth})
    return TestClient(create_app(config), base_url="http://registry.test", client=(address, 40000))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_back_off_grows_and_success_resets() -> None:
    clock = Clock()
    brake = LoginBrake(attempts=3, delay=1.0, maxdelay=8.0, window=600.0, entries=100, clock=clock)
    for _ in range(3):
        assert brake.wait("alice", "10.0.0.1") == 0
        brake.failed("alice", "10.0.0.1")
    assert brake.wait("alice", "10.0.0.1") == pytest.approx(1.0)
    assert brake.wait("bob", "10.0.0.1") == 0  # another user behind the same address
    assert brake.wait("alice", "10.0.0.2") == 0  # the same user elsewhere
    delays = []
    for _ in range(6):
        clock.now += brake.wait("alice", "10.0.0.1")
        brake.failed("alice", "10.0.0.1")
        delays.append(brake.wait("alice", "10.0.0.1"))
    assert delays == pytest.approx([2.0, 4.0, 8.0, 8.0, 8.0, 8.0])
    clock.now += 8
    brake.succeeded("alice", "10.0.0.1")
    assert brake.wait("alice", "10.0.0.1") == 0
    brake.failed("alice", "10.0.0.1")
    assert brake.wait("alice", "10.0.0.1") == 0


def test_failures_are_forgotten_after_the_window_and_memory_is_bounded() -> None:
    clock = Clock()
    brake = LoginBrake(attempts=1, delay=1.0, maxdelay=8.0, window=60.0, entries=10, clock=clock)
    brake.failed("alice", "10.0.0.1")
    assert brake.wait("alice", "10.0.0.1") > 0
    clock.now += 61
    assert brake.wait("alice", "10.0.0.1") == 0
    for i in range(1000):
        brake.failed(f"user{i}", "10.0.0.9")
    assert len(brake) <= 10


@pytest.fixture
def basic_auth(htpasswd_file: Path) -> dict[str, Any]:
    return {"htpasswd": {"realm": "moorage", "path": str(htpasswd_file)}, "access": API_RULES}


def test_basic_brute_force_is_braked(basic_auth: dict[str, Any], tmp_path: Path) -> None:
    with client_at(basic_auth, tmp_path / "root", "192.0.2.7") as attacker:
        statuses = [attacker.get("/v2/", headers=basic("alice", f"guess{i}")).status_code for i in range(300)]
        assert statuses[:5] == [401] * 5
        assert statuses.count(429) >= 290
        r = attacker.get("/v2/", headers=basic("alice", "guess"))
        assert r.status_code == 429
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert int(r.headers["Retry-After"]) >= 1
        # while braked even the right password is not checked: guessing must not go on behind the 429s
        assert attacker.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 429
        # a colleague behind the same address is not locked out
        assert attacker.get("/v2/", headers=basic("bob", "bob-pw")).status_code == 200
    with client_at(basic_auth, tmp_path / "root", "198.51.100.3") as elsewhere:
        assert elsewhere.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 200


def test_brake_can_be_turned_off(basic_auth: dict[str, Any], tmp_path: Path) -> None:
    basic_auth["brake"] = {"enabled": False}
    with client_at(basic_auth, tmp_path / "root", "192.0.2.7") as attacker:
        statuses = {attacker.get("/v2/", headers=basic("alice", f"guess{i}")).status_code for i in range(30)}
        assert statuses == {401}


def test_token_endpoint_brute_force_is_braked(token_auth: dict[str, Any], tmp_path: Path) -> None:
    with client_at(token_auth, tmp_path / "root", "192.0.2.8") as attacker:
        get_statuses = [attacker.get("/auth/token", headers=basic("alice", f"guess{i}")).status_code
                        for i in range(150)]
        assert get_statuses[:5] == [401] * 5 and get_statuses.count(429) >= 140
        r = attacker.get("/auth/token", headers=basic("alice", "x"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        form = {"grant_type": "password", "username": "alice", "password": "nope", "service": "test-registry"}
        r = attacker.post("/auth/token", data=form)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert attacker.get("/auth/token", headers=basic("bob", "bob-pw")).status_code == 200
    with client_at(token_auth, tmp_path / "root", "198.51.100.4") as elsewhere:
        assert elsewhere.get("/auth/token", headers=basic("alice", "alice-pw")).status_code == 200


def test_token_password_grant_is_braked(token_auth: dict[str, Any], tmp_path: Path) -> None:
    with client_at(token_auth, tmp_path / "root", "192.0.2.9") as attacker:
        form = {"grant_type": "password", "username": "bob", "service": "test-registry"}
        statuses = [attacker.post("/auth/token", data={**form, "password": f"g{i}"}).status_code for i in range(50)]
        assert statuses[:5] == [401] * 5 and statuses.count(429) >= 40


def test_forwarded_address_counts_behind_a_trusted_proxy(basic_auth: dict[str, Any], tmp_path: Path) -> None:
    config = parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "auth": basic_auth,
                    "http": {"trustedproxies": ["10.0.0.0/8"]}})
    with TestClient(create_app(config), base_url="http://registry.test", client=("10.0.0.2", 1)) as proxy:
        for i in range(10):
            proxy.get("/v2/", headers={**basic("alice", f"g{i}"), "X-Forwarded-For": "203.0.113.5"})
        assert proxy.get("/v2/", headers={**basic("alice", "alice-pw"),
                                         "X-Forwarded-For": "203.0.113.5"}).status_code == 429
        # another client behind the same proxy
        assert proxy.get("/v2/", headers={**basic("alice", "alice-pw"),
                                         "X-Forwarded-For": "203.0.113.6"}).status_code == 200


def test_search_and_web_ui_logins_are_braked(basic_auth: dict[str, Any], tmp_path: Path) -> None:
    """The other places a password is checked (docker search's /v1/search, the web UI) share the brake."""
    with client_at(basic_auth, tmp_path / "root", "192.0.2.10") as attacker:
        statuses = [attacker.get("/v1/search", params={"q": "x"}, headers=basic("alice", f"g{i}")).status_code
                    for i in range(20)]
        assert statuses[:5] == [401] * 5 and statuses.count(429) >= 14
        r = attacker.get("/v1/search", params={"q": "x"}, headers=basic("alice", "alice-pw"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        # one count with /v2: the same guesser is held there too
        assert attacker.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 429
        login = attacker.app.registry.login  # type: ignore[attr-defined]

        async def ui_login() -> None:
            with pytest.raises(TooManyAttempts):
                await login.check("alice", "alice-pw", "192.0.2.10")
            assert await login.check("alice", "alice-pw", "192.0.2.11")

        asyncio.run(ui_login())


def test_failures_on_usage_and_metrics_lock_out_only_their_address(basic_auth: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    """Issue 24, item 11: /api/v1/usage, the main-address /metrics and /api/v1/replication counted
    failures without the client's address, so a guesser locked alice (and the metric scrapers) out from
    everywhere."""
    for path in ("/api/v1/usage", "/metrics", "/api/v1/replication/rules"):
        # a registry (brake, database) per path: a guesser's count is shared by every path of one
        root = tmp_path / path.strip("/").replace("/", "-")
        config = parse({"storage": {"filesystem": {"rootdirectory": str(root)}}, "auth": basic_auth,
                        "http": {"metrics": {"enabled": True}}})
        app = create_app(config)
        attacker = TestClient(app, base_url="http://registry.test", client=("192.0.2.7", 1))
        alice = TestClient(app, base_url="http://registry.test", client=("198.51.100.3", 1))
        statuses = [attacker.get(path, headers=basic("alice", f"guess{i}")).status_code for i in range(12)]
        assert statuses[:5] == [401] * 5 and 429 in statuses, (path, statuses)
        assert alice.get(path, headers=basic("alice", "alice-pw")).status_code == 200, path
        assert alice.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 200, path
        assert attacker.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 429, path


def test_implausibly_long_user_names_are_neither_kept_nor_logged(basic_auth: dict[str, Any], tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Issue 24, item 11: 3,000 failures with 40 KB user names grew the process by 126 MB (the brake's
    keys) and the log by 23.5 MB."""
    huge = "u" * 40_000
    with caplog.at_level(logging.INFO), client_at(basic_auth, tmp_path / "root", "192.0.2.7") as attacker:
        brake = attacker.app.registry.login.credentials.brake  # type: ignore[attr-defined]
        for i in range(30):
            r = attacker.get("/v2/", headers=basic(f"{huge}{i}", "pw"))
            assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
            form = {"grant_type": "password", "username": f"{huge}{i}", "password": "pw"}
            assert attacker.post("/ui/login", data=form).status_code in (401, 403)
        assert len(brake) == 0
        # a name at the bound is an ordinary (unknown) user: counted and braked like any other
        longest = "u" * MAX_USER_NAME
        statuses = [attacker.get("/v2/", headers=basic(longest, f"g{i}")).status_code for i in range(8)]
        assert statuses[:5] == [401] * 5 and 429 in statuses
    assert max(len(record.getMessage()) for record in caplog.records) < 2 * MAX_USER_NAME


def test_replicas_brake_on_one_count(basic_auth: dict[str, Any], tmp_path: Path) -> None:
    """Issue 24, item 11: with several replicas (or workers) each braked on its own, so a guesser spreading
    guesses over them had N times the allowance.  Sharing a database, they count the same failures."""
    config = parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}}, "auth": basic_auth})
    with TestClient(create_app(config), base_url="http://registry.test", client=("192.0.2.7", 1)) as one, \
            TestClient(create_app(config), base_url="http://registry.test", client=("192.0.2.7", 1)) as two:
        for i in range(3):  # 3 + 3 wrong guesses: fewer than 5 on either replica
            for replica in (one, two):
                assert replica.get("/v2/", headers=basic("alice", f"guess{i}")).status_code == 401
                time.sleep(0.2)  # the shared count is written just after the answer
        assert two.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 429
        assert one.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 429
        assert one.get("/v2/", headers=basic("bob", "bob-pw")).status_code == 200  # a colleague is not held


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'moorage.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_the_shared_count_survives_concurrency_and_an_unreachable_database(database_url: str) -> None:
    async def run() -> None:
        databases = [Database(database_url) for _ in range(3)]
        brakes = [LoginBrake(attempts=30, delay=1.0) for _ in databases]
        for brake, database in zip(brakes, databases, strict=True):
            brake.share(SharedFailures(database))
        try:
            for _ in range(10):  # 30 failures at once over three replicas: none lost
                for brake in brakes:
                    brake.failed("alice", "192.0.2.7")
            for brake in brakes:
                await brake.settled()
            brakes[0].failed("alice", "192.0.2.7")
            await brakes[0].settled()
            assert brakes[0].wait("alice", "192.0.2.7") > 0  # 31 failures counted
            assert brakes[1].wait("bob", "192.0.2.7") == 0
            brakes[0].succeeded("alice", "192.0.2.7")
            await brakes[0].settled()
            brakes[2].failed("alice", "192.0.2.8")
            await brakes[2].settled()
            await databases[1].close()  # closed: every call refused, as when the database is down
            brakes[1].failed("carol", "192.0.2.9")
            await brakes[1].settled()  # counted here only, no error
            assert len(brakes[1]) >= 1
        finally:
            for database in databases:
                await database.close()

    asyncio.run(run())
