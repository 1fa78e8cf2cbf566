"""A failing local disk (EIO, a read-only remount) answers 503 UNAVAILABLE with Retry-After; a full one
507 (issue 14, defect 2)."""

from __future__ import annotations

import errno
import os

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import image_manifest, put_manifest, sha256


def failing(error: int):  # type: ignore[no-untyped-def]
    def fail(*_args: object, **_kwargs: object) -> None:
        raise OSError(error, os.strerror(error))
    return fail


@pytest.mark.parametrize("error", [errno.EIO, errno.EROFS, errno.ESTALE])
def test_disk_errors_are_unavailable(client: TestClient, monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    body = image_manifest(client, "team/app")
    assert put_manifest(client, "team/app", "v1", body).status_code == 201
    driver = client.app.registry.driver  # type: ignore[attr-defined]
    monkeypatch.setattr(driver, "_put_sync", failing(error))
    monkeypatch.setattr(driver, "get_content", failing(error))
    for r in (put_manifest(client, "team/app", "v2", body), client.get("/v2/team/app/manifests/v1"),
              client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(b'x')}", content=b"x")):
        assert r.status_code == 503, r.text
        assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert int(r.headers["Retry-After"]) >= 1


def test_full_disk_stays_507(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = client.app.registry.driver  # type: ignore[attr-defined]
    monkeypatch.setattr(driver, "_put_sync", failing(errno.ENOSPC))
    r = client.post("/v2/team/app/blobs/uploads/")
    assert r.status_code == 507 and r.json()["errors"][0]["code"] == "UNKNOWN"
