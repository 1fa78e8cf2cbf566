"""Classic suite (v1.1.0 ``04_management_test.go``): manifest (tag, digest) and blob deletion."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.conftest import REPO1
from tests.conformance.legacydata import CLASSIC, TAG_NAME
from tests.conformance.ociapi import Api, error_codes, expect_status
from tests.conformance.ocidata import MT_IMAGE, MT_OCTET

DATA = CLASSIC
STATE: dict[str, Any] = {"blob_delete_allowed": True}


def upload(api: Api, digest: str, content: bytes) -> None:
    resp = api.do("POST", f"/v2/{REPO1}/blobs/uploads/")
    resp = api.do("PUT", api.with_param(resp.headers.get("location", ""), "digest", digest),
                  headers={"Content-Type": MT_OCTET, "Content-Length": str(len(content))}, content=content)
    assert 200 <= resp.status_code < 300, resp.text


def tag_count(api: Api) -> int:
    resp = api.do("GET", f"/v2/{REPO1}/tags/list")
    expect_status(resp, 200)
    return len(resp.json()["tags"] or [])


def test_setup(classic_api: Api) -> None:
    upload(classic_api, DATA.configs[3].digest, DATA.configs[3].content)
    upload(classic_api, DATA.layer.digest, DATA.layer.content)
    resp = classic_api.do("PUT", f"/v2/{REPO1}/manifests/{TAG_NAME}", headers={"Content-Type": MT_IMAGE},
                         content=DATA.manifests[3].content)
    assert 200 <= resp.status_code < 300, resp.text
    STATE["tags"] = tag_count(classic_api)


def test_delete_tag_is_202_or_refused(classic_api: Api) -> None:
    """202, or 400 (with code UNSUPPORTED) / 405 when tag deletion is not allowed."""
    resp = classic_api.do("DELETE", f"/v2/{REPO1}/manifests/{TAG_NAME}")
    expect_status(resp, 202, 400, 405)
    if resp.status_code == 400:
        assert error_codes(resp)[:1] == ["UNSUPPORTED"]


def test_delete_manifest_by_digest_is_202_or_404(classic_api: Api) -> None:
    expect_status(classic_api.do("DELETE", f"/v2/{REPO1}/manifests/{DATA.manifests[3].digest}"), 202, 404)


def test_get_deleted_manifest(classic_api: Api) -> None:
    resp = classic_api.do("GET", f"/v2/{REPO1}/manifests/{DATA.manifests[3].digest}")
    expect_status(resp, 404, 200)


def test_tag_list_reflects_deletion(classic_api: Api) -> None:
    assert tag_count(classic_api) < STATE["tags"]


def test_delete_blobs(classic_api: Api) -> None:
    for blob in (DATA.configs[3], DATA.layer):
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/blobs/{blob.digest}")
        expect_status(resp, 202, 404, 405)
    STATE["blob_delete_allowed"] = resp.status_code != 405


def test_get_deleted_blob_is_404(classic_api: Api) -> None:
    if not STATE["blob_delete_allowed"]:
        pytest.skip("blob delete not allowed")
    expect_status(classic_api.do("GET", f"/v2/{REPO1}/blobs/{DATA.configs[3].digest}"), 404)
