"""Classic suite (v1.1.0 ``01_pull_test.go``): setup, pull blobs, pull manifests, error codes, teardown.

The four classic modules (pull, push, discovery, management) share one registry and run in that order, as ginkgo runs them.
"""

from __future__ import annotations

from tests.conformance.conftest import REPO1
from tests.conformance.legacydata import CLASSIC, DUMMY_DIGEST, INVALID_MANIFEST, NONEXISTENT_MANIFEST, TAG_NAME
from tests.conformance.ociapi import ERROR_CODES, Api, error_codes, expect_status
from tests.conformance.ocidata import MT_IMAGE, MT_OCTET

DATA = CLASSIC
ACCEPT = {"Accept": MT_IMAGE}


def upload(api: Api, digest: str, content: bytes) -> None:
    """POST then PUT ?digest= with the body: any 2xx."""
    resp = api.do("POST", f"/v2/{REPO1}/blobs/uploads/")
    put = api.with_param(resp.headers.get("location", ""), "digest", digest)
    resp = api.do("PUT", put, headers={"Content-Type": MT_OCTET, "Content-Length": str(len(content))},
                  content=content)
    assert 200 <= resp.status_code < 300, resp.text


def test_setup(classic_api: Api) -> None:
    """Populate configs[0], configs[1], the layer, manifests[0] as tagtest0 and manifests[1] by digest."""
    for blob in (DATA.configs[0], DATA.configs[1], DATA.layer):
        upload(classic_api, blob.digest, blob.content)
    for ref, manifest in ((TAG_NAME, DATA.manifests[0]), (DATA.manifests[1].digest, DATA.manifests[1])):
        resp = classic_api.do("PUT", f"/v2/{REPO1}/manifests/{ref}", headers={"Content-Type": MT_IMAGE},
                             content=manifest.content)
        assert 200 <= resp.status_code < 300, resp.text


def test_head_nonexistent_blob_is_404(classic_api: Api) -> None:
    expect_status(classic_api.do("HEAD", f"/v2/{REPO1}/blobs/{DUMMY_DIGEST}"), 404)


def test_head_existing_blob_is_200(classic_api: Api) -> None:
    resp = classic_api.do("HEAD", f"/v2/{REPO1}/blobs/{DATA.configs[0].digest}")
    expect_status(resp, 200)
    assert resp.headers.get("docker-content-digest", DATA.configs[0].digest) == DATA.configs[0].digest


def test_get_nonexistent_blob_is_404(classic_api: Api) -> None:
    expect_status(classic_api.do("GET", f"/v2/{REPO1}/blobs/{DUMMY_DIGEST}"), 404)


def test_get_existing_blob_is_200(classic_api: Api) -> None:
    expect_status(classic_api.do("GET", f"/v2/{REPO1}/blobs/{DATA.configs[0].digest}"), 200)


def test_head_nonexistent_manifest_is_404(classic_api: Api) -> None:
    """Reference ``.INVALID_MANIFEST_NAME`` (neither a valid tag nor a digest)."""
    expect_status(classic_api.do("HEAD", f"/v2/{REPO1}/manifests/{NONEXISTENT_MANIFEST}"), 404)


def test_head_manifests_by_digest_are_200(classic_api: Api) -> None:
    for manifest in DATA.manifests[:2]:
        resp = classic_api.do("HEAD", f"/v2/{REPO1}/manifests/{manifest.digest}", headers=ACCEPT)
        expect_status(resp, 200)
        assert resp.headers.get("docker-content-digest", manifest.digest) == manifest.digest


def test_head_manifest_by_tag_is_200(classic_api: Api) -> None:
    resp = classic_api.do("HEAD", f"/v2/{REPO1}/manifests/{TAG_NAME}", headers=ACCEPT)
    expect_status(resp, 200)
    assert resp.headers.get("docker-content-digest", DATA.manifests[0].digest) == DATA.manifests[0].digest


def test_get_nonexistent_manifest_is_404(classic_api: Api) -> None:
    expect_status(classic_api.do("GET", f"/v2/{REPO1}/manifests/{NONEXISTENT_MANIFEST}"), 404)


def test_get_manifests_are_200(classic_api: Api) -> None:
    for ref in (DATA.manifests[0].digest, DATA.manifests[1].digest, TAG_NAME):
        expect_status(classic_api.do("GET", f"/v2/{REPO1}/manifests/{ref}", headers=ACCEPT), 200)


def test_error_body_of_bad_reference(classic_api: Api) -> None:
    """GET manifests/sha256:totallywrong: 400 or 404; a 400 MUST carry a known error code first."""
    resp = classic_api.do("GET", f"/v2/{REPO1}/manifests/sha256:totallywrong",
                         headers={"Content-Type": MT_IMAGE}, content=INVALID_MANIFEST)
    expect_status(resp, 400, 404)
    if resp.status_code == 400:
        codes = error_codes(resp)
        assert codes and codes[0] in ERROR_CODES, resp.text


def test_teardown(classic_api: Api) -> None:
    """Delete manifests (2xx or 405) then blobs (2xx, 404 or 405): OCI_DELETE_MANIFEST_BEFORE_BLOBS default."""
    for manifest in DATA.manifests[:2]:
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/manifests/{manifest.digest}")
        assert 200 <= resp.status_code < 300 or resp.status_code == 405, resp.text
    for blob in (DATA.configs[0], DATA.configs[1], DATA.layer):
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/blobs/{blob.digest}")
        assert 200 <= resp.status_code < 300 or resp.status_code in (404, 405), resp.text
