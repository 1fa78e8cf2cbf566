"""The token server's counters: tokens issued by grant, refusals by reason."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from tests.auth.conftest import SERVICE
from tests.auth.test_api import app_client


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_tokens_issued_and_refused_are_counted(tmp_path: Path, token_auth) -> None:
    before = {
        "basic": count("moorage_tokens_issued_total", grant="basic"),
        "password": count("moorage_tokens_issued_total", grant="password"),
        "bad": count("moorage_tokens_refused_total", reason="invalid_credentials"),
        "service": count("moorage_tokens_refused_total", reason="unknown_service"),
        "grant": count("moorage_tokens_refused_total", reason="bad_request"),
    }
    with app_client(tmp_path, token_auth) as client:
        assert client.get("/auth/token", params={"service": SERVICE}, auth=("alice", "alice-pw")).status_code == 200
        assert client.get("/auth/token", params={"service": SERVICE}).status_code == 200  # anonymous
        assert client.get("/auth/token", params={"service": SERVICE}, auth=("alice", "nope")).status_code == 401
        assert client.get("/auth/token", params={"service": "elsewhere"}).status_code == 400
        assert client.post("/auth/token", data={"grant_type": "password", "username": "bob",
                                                "password": "bob-pw"}).status_code == 200
        assert client.post("/auth/token", data={"grant_type": "magic"}).status_code == 400
    assert count("moorage_tokens_issued_total", grant="basic") == before["basic"] + 2
    assert count("moorage_tokens_issued_total", grant="password") == before["password"] + 1
    assert count("moorage_tokens_refused_total", reason="invalid_credentials") == before["bad"] + 1
    assert count("moorage_tokens_refused_total", reason="unknown_service") == before["service"] + 1
    assert count("moorage_tokens_refused_total", reason="bad_request") == before["grant"] + 1
