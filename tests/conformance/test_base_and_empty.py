"""Newest suite: ``ping``, ``empty`` (tag list and referrers of an empty repository) and missing content."""

from __future__ import annotations

import os

from tests.conformance.conftest import REPO1
from tests.conformance.ociapi import Api, expect_status
from tests.conformance.ocidata import digest_of


def test_ping_returns_200(api: Api) -> None:
    """GET /v2/ MUST return 200 (spec: end-1)."""
    api.ping()


def test_empty_repository_tag_list_is_200_or_404(api: Api) -> None:
    """GET tags/list of a never-pushed repository: 200 with a JSON list, or 404."""
    resp = api.do("GET", f"/v2/{REPO1}/tags/list")
    expect_status(resp, 200, 404)
    if resp.status_code == 200:
        assert isinstance(resp.json().get("tags"), list | None)


def test_empty_referrers_is_an_empty_index(api: Api) -> None:
    """GET referrers of an unknown digest: 200, Content-Type index, mediaType and schemaVersion set."""
    index, _ = api.referrers(REPO1, digest_of(os.urandom(32)))
    assert index.get("manifests") == []


def test_missing_manifest_by_digest_is_404(api: Api) -> None:
    resp = api.do("GET", f"/v2/{REPO1}/manifests/{digest_of(os.urandom(1024))}", headers=Api.ACCEPT)
    expect_status(resp, 404)


def test_missing_manifest_by_tag_is_404(api: Api) -> None:
    resp = api.do("GET", f"/v2/{REPO1}/manifests/missing-{os.urandom(10).hex()}", headers=Api.ACCEPT)
    expect_status(resp, 404)


def test_get_missing_blob_is_404(api: Api) -> None:
    """The ``get-missing`` step of the blob tests."""
    expect_status(api.blob_get(REPO1, digest_of(os.urandom(512))), 404)
