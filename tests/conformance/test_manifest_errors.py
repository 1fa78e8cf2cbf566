"""Newest suite, ``TestManifestErrors``: a malformed digest reference on PUT and GET."""

from __future__ import annotations

from tests.conformance.conftest import REPO1
from tests.conformance.ociapi import Api, expect_status
from tests.conformance.ocidata import build, options

BAD_REFERENCE = "sha256:baddigeststring"


def test_put_with_malformed_digest_reference_is_400(api: Api) -> None:
    """PUT /manifests/sha256:baddigeststring (layers pushed) MUST be 400 (``ExpectBadDigest``)."""
    ds = build("image")
    ds.tags.clear()
    dig = ds.full_image(options(layer_count=1))
    for blob, data in ds.blobs.items():
        api.push_blob(REPO1, blob, data)
    api.manifest_put(REPO1, BAD_REFERENCE, ds.manifests[dig], dig, bad=True)


def test_get_with_malformed_digest_reference_is_404_or_400(api: Api) -> None:
    resp = api.do("GET", f"/v2/{REPO1}/manifests/{BAD_REFERENCE}", headers=Api.ACCEPT)
    expect_status(resp, 404, 400)
