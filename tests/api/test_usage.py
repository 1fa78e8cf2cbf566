"""Storage accounting: GET /api/v1/usage and `moorage du`, shared blobs counted once per namespace and
once overall, behind the catalog's access rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry.cli import main

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
