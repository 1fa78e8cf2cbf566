"""Classic suite (v1.1.0 ``03_discovery_test.go``): tag listing with ``n``/``last`` and the referrers API.

Setup pushes manifests[2] under test0..test3, then the referrer artifacts around manifests[4] (the subject)
and one artifact whose subject (manifests[3]) is never pushed. The four classic modules share one registry, in upstream order.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.conftest import REPO1
from tests.conformance.legacydata import ANNOTATION_KEY, ARTIFACT_TYPE_A, CLASSIC, DUMMY_DIGEST, TAG_NAME
from tests.conformance.ociapi import Api, expect_status
from tests.conformance.ocidata import MT_IMAGE, MT_INDEX, MT_OCTET

DATA = CLASSIC
STATE: dict[str, Any] = {}


def upload(api: Api, digest: str, content: bytes) -> None:
    resp = api.do("POST", f"/v2/{REPO1}/blobs/uploads/")
    resp = api.do("PUT", api.with_param(resp.headers.get("location", ""), "digest", digest),
                  headers={"Content-Type": MT_OCTET, "Content-Length": str(len(content))}, content=content)
    assert 200 <= resp.status_code < 300, resp.text


def put_manifest(api: Api, ref: str, content: bytes, media_type: str = MT_IMAGE) -> Any:
    resp = api.do("PUT", f"/v2/{REPO1}/manifests/{ref}", headers={"Content-Type": media_type}, content=content)
    assert 200 <= resp.status_code < 300, resp.text
    return resp


def test_setup_tags(classic_api: Api) -> None:
    upload(classic_api, DATA.configs[2].digest, DATA.configs[2].content)
    upload(classic_api, DATA.layer.digest, DATA.layer.content)
    for i in range(4):
        put_manifest(classic_api, f"test{i}", DATA.manifests[2].content)


def test_setup_references(classic_api: Api) -> None:
    """Each artifact pushed by digest MUST answer with OCI-Subject naming its subject."""
    subject, missing = DATA.manifests[4].digest, DATA.manifests[3].digest
    assert DATA.empty_json.digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    upload(classic_api, DATA.empty_json.digest, DATA.empty_json.content)
    upload(classic_api, DATA.ref_blob_a.digest, DATA.ref_blob_a.content)
    for name, media_type in (("config a", MT_IMAGE), ("layer a", MT_IMAGE), ("index", MT_INDEX)):
        resp = put_manifest(classic_api, DATA.refs[name].digest, DATA.refs[name].content, media_type)
        assert resp.headers.get("oci-subject") == subject, f"{name}: {dict(resp.headers)}"
    upload(classic_api, DATA.configs[4].digest, DATA.configs[4].content)
    upload(classic_api, DATA.layer.digest, DATA.layer.content)
    put_manifest(classic_api, TAG_NAME, DATA.manifests[4].content)
    upload(classic_api, DATA.ref_blob_b.digest, DATA.ref_blob_b.content)
    for name, expected in (("config b", subject), ("layer b", subject), ("layer c", missing)):
        resp = put_manifest(classic_api, DATA.refs[name].digest, DATA.refs[name].content)
        assert resp.headers.get("oci-subject") == expected, f"{name}: {dict(resp.headers)}"


def test_list_tags_is_200(classic_api: Api) -> None:
    resp = classic_api.do("GET", f"/v2/{REPO1}/tags/list")
    expect_status(resp, 200)
    STATE["tags"] = resp.json()["tags"]


def test_n_limits_tag_count(classic_api: Api) -> None:
    wanted = len(STATE["tags"]) // 2
    resp = classic_api.do("GET", f"/v2/{REPO1}/tags/list?n={wanted}")
    expect_status(resp, 200)
    assert len(resp.json()["tags"]) == wanted
    STATE["page"] = resp.json()["tags"]


def test_last_sets_start_of_list(classic_api: Api) -> None:
    """The suite's own check here only re-reads its earlier page; the request must still succeed."""
    wanted = len(STATE["tags"]) // 2
    resp = classic_api.do("GET", f"/v2/{REPO1}/tags/list?n={wanted}")
    page = resp.json()["tags"]
    resp = classic_api.do("GET", f"/v2/{REPO1}/tags/list?n={wanted}&last={page[wanted - 1]}")
    expect_status(resp, 200)
    assert len(page) <= wanted and page[wanted - 1] in page


def referrers(api: Api, digest: str, query: str = "") -> tuple[dict[str, Any], Any]:
    resp = api.do("GET", f"/v2/{REPO1}/referrers/{digest}{query}")
    expect_status(resp, 200)
    assert resp.headers.get("content-type") == MT_INDEX
    return resp.json(), resp


def test_referrers_of_unknown_digest_is_empty(classic_api: Api) -> None:
    index, _ = referrers(classic_api, DUMMY_DIGEST)
    assert len(index["manifests"]) == 0


def test_referrers_of_subject(classic_api: Api) -> None:
    """Five referrers, distinct, each with exactly its one test annotation."""
    index, _ = referrers(classic_api, DATA.manifests[4].digest)
    assert len(index["manifests"]) == 5
    assert index["manifests"][0]["digest"] != index["manifests"][1]["digest"]
    for entry in index["manifests"]:
        assert entry.get("annotations") == {ANNOTATION_KEY: DATA.annotations[entry["digest"]]}


def test_referrers_filtered_by_artifact_type(classic_api: Api) -> None:
    """With OCI-Filters-Applied: exactly the two type-A artifacts; without it, all five."""
    index, resp = referrers(classic_api, DATA.manifests[4].digest, f"?artifactType={ARTIFACT_TYPE_A}")
    if resp.headers.get("oci-filters-applied"):
        assert len(index["manifests"]) == 2
        assert resp.headers["oci-filters-applied"] == "artifactType"
    else:
        assert len(index["manifests"]) == 5
    for entry in index["manifests"]:
        assert entry.get("annotations") == {ANNOTATION_KEY: DATA.annotations[entry["digest"]]}


def test_referrers_of_missing_subject(classic_api: Api) -> None:
    index, _ = referrers(classic_api, DATA.manifests[3].digest)
    assert [e["digest"] for e in index["manifests"]] == [DATA.refs["layer c"].digest]


def test_teardown(classic_api: Api) -> None:
    """Manifests and tags (2xx, 404, 405), then blobs (2xx or 405; 404 also for the referrer blobs)."""
    refs = [DATA.refs["index"].digest, DATA.manifests[2].digest, DATA.manifests[4].digest,
            DATA.refs["config a"].digest, DATA.refs["layer a"].digest, TAG_NAME, DATA.refs["config b"].digest,
            DATA.refs["layer b"].digest, DATA.refs["layer c"].digest]
    for ref in refs:
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/manifests/{ref}")
        assert 200 <= resp.status_code < 300 or resp.status_code in (404, 405), resp.text
    for blob in (DATA.configs[2], DATA.layer):
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/blobs/{blob.digest}")
        assert 200 <= resp.status_code < 300 or resp.status_code == 405, resp.text
    for blob in (DATA.configs[4], DATA.ref_blob_a, DATA.ref_blob_b, DATA.empty_json):
        resp = classic_api.do("DELETE", f"/v2/{REPO1}/blobs/{blob.digest}")
        assert 200 <= resp.status_code < 300 or resp.status_code in (404, 405), resp.text
