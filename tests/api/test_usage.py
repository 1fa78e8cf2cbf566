"""Storage accounting: GET /api/v1/usage and `moorage du`, shared blobs counted once per namespace and
once overall, behind the catalog's access rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry.cli import main
from tests.auth.conftest import bcrypt_line

from .conftest import make_client, push_blob


def test_usage_counts_shared_blobs_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with make_client(root) as c:
        for name, blobs in {"team/a": [b"s" * 100, b"a" * 10], "team/b": [b"s" * 100, b"b" * 20],
                            "ops/c": [b"s" * 100, b"c" * 30]}.items():
            for blob in blobs:
                push_blob(c, name, blob)
        r = c.get("/api/v1/usage")
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == {"bytes": 160, "blobs": 4}
        assert body["namespaces"] == [
            {"name": "ops", "bytes": 130, "blobs": 2, "exclusive": 30},
            {"name": "team", "bytes": 130, "blobs": 3, "exclusive": 30},
        ]
        assert body["repositories"] == [
            {"name": "ops/c", "bytes": 130, "blobs": 2, "exclusive": 30},
            {"name": "team/a", "bytes": 110, "blobs": 2, "exclusive": 10},
            {"name": "team/b", "bytes": 120, "blobs": 2, "exclusive": 20},
        ]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    assert main(["du", str(config), "team/*"]) == 0
    out = capsys.readouterr().out
    assert "team/a" in out and "ops/c" not in out and out.rstrip().endswith("130 B        3")
    assert main(["du", str(config), "Bad/Glob"]) == 2


def test_usage_needs_catalog_access(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    auth = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
    with make_client(tmp_path / "root", auth=auth) as c:
        r = c.get("/api/v1/usage")
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert "WWW-Authenticate" in r.headers


def test_exclusive_tells_nothing_of_repositories_the_caller_cannot_see(tmp_path: Path) -> None:
    """Issue 24, item 10: bob pushes a layer he guesses carol holds; his figures must read the same
    whether or not carol's repository, which he cannot see, holds it."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(bcrypt_line(u, f"{u}-pw") + "\n" for u in ("admin", "bob", "carol")))
    auth = {"htpasswd": {"realm": "test", "path": str(htpasswd)},
            "access": {"admins": ["admin"], "catalog": ["authenticated"],
                       "rules": [{"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]}]}}
    guess, own = b"g" * 1000, b"o" * 10
    with make_client(tmp_path / "root", auth=auth) as c:
        c.auth = ("carol", "carol-pw")
        push_blob(c, "carol/secret", guess)
        c.auth = ("bob", "bob-pw")
        push_blob(c, "bob/probe", guess)
        push_blob(c, "bob/probe", own)
        body = c.get("/api/v1/usage").json()
        assert [r["name"] for r in body["repositories"]] == ["bob/probe"]
        assert body["repositories"][0]["exclusive"] == 1010  # not 10: that would say carol holds the guess
        assert body["namespaces"] == [{"name": "bob", "bytes": 1010, "blobs": 2, "exclusive": 1010}]
        c.auth = ("admin", "admin-pw")
        admin = c.get("/api/v1/usage").json()
        assert {r["name"]: r["exclusive"] for r in admin["repositories"]} == {"bob/probe": 10, "carol/secret": 0}
