"""What looks at every repository (search, the usage report) reads the tree once per walk, not once per request
(issue 24, item 2: with 10,000 repositories one client looping on /api/v1/usage lifted everyone's manifest GET
p50 from 2.6 ms to 1.5 s; /v1/search looping, 974 ms)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.callcount import count_calls
from tests.e2e.trees import write_registry

from .conftest import image_manifest, make_client, put_manifest

REPOSITORIES = 300


def count_listings(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    driver = client.app.registry.driver  # type: ignore[attr-defined]
    return count_calls(driver, ("list", "list_nested", "list_keys", "walk"), monkeypatch)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write_registry(root, REPOSITORIES)
    return root


def test_searches_read_the_tree_once_not_per_request(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make_client(big) as client:
        calls = count_listings(client, monkeypatch)
        first = client.get("/v1/search", params={"q": "repo1"}).json()
        assert first["num_results"] == 111  # repo1, repo10-19, repo100-199
        one_walk = sum(calls.values())
        assert one_walk >= REPOSITORIES  # it did read the tree
        for _ in range(5):  # terms that match nothing: the names are all they read
            assert client.get("/v1/search", params={"q": "zzz"}).json()["num_results"] == 0
            assert client.get("/ui/", params={"q": "zzz"}).status_code == 200
        assert sum(calls.values()) == one_walk, calls
        for term in ["repo2", "ns3/"]:  # beyond the names, only what the page shows (its tags, labels)
            assert client.get("/v1/search", params={"q": term, "n": 10}).status_code == 200
            assert client.get("/ui/", params={"q": term, "n": 10}).status_code == 200
        assert sum(calls.values()) - one_walk <= 2 * 2 * 10 * 3, calls
        # a repository this process creates is found at once, before the next walk
        put_manifest(client, "fresh/new", "1", image_manifest(client, "fresh/new"))
        assert client.get("/v1/search", params={"q": "fresh"}).json()["num_results"] == 1


def test_usage_reports_read_the_tree_once_not_per_request(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make_client(big) as client:
        calls = count_listings(client, monkeypatch)
        first = client.get("/api/v1/usage").json()
        assert len(first["repositories"]) == REPOSITORIES
        one_walk = sum(calls.values())
        for _ in range(10):
            assert client.get("/api/v1/usage").json() == first
            assert client.get("/ui/usage").status_code == 200
        assert sum(calls.values()) == one_walk, calls
