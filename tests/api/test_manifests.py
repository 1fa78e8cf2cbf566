"""Manifests of every media type, tags, referrers and catalog, with their error paths."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    image_manifest,
    make_client,
    put_manifest,
    sha256,
)


def error_code(r) -> str:
    return r.json()["errors"][0]["code"]


def test_put_get_head_by_tag_and_digest(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    r = put_manifest(client, "team/app", "v1", body)
    assert r.status_code == 201, r.text
    digest = sha256(body)
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["location"].endswith(f"/v2/team/app/manifests/{digest}")
    for reference in ("v1", digest):
        r = client.get(f"/v2/team/app/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["content-type"] == OCI_MANIFEST
        assert r.headers["docker-content-digest"] == digest
        r = client.head(f"/v2/team/app/manifests/{reference}")
        assert r.status_code == 200 and r.headers["content-length"] == str(len(body))
    r = client.get("/v2/team/app/manifests/v1", headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


def test_docker_schema2_and_manifest_list(client: TestClient) -> None:
    amd = image_manifest(client, "multi/app", [b"amd-layer"], media_type=DOCKER_MANIFEST)
    arm = image_manifest(client, "multi/app", [b"arm-layer"], media_type=DOCKER_MANIFEST,
                         config=b'{"architecture":"arm64","os":"linux"}')
    assert put_manifest(client, "multi/app", sha256(amd), amd, DOCKER_MANIFEST).status_code == 201
    assert put_manifest(client, "multi/app", sha256(arm), arm, DOCKER_MANIFEST).status_code == 201
    manifest_list = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(arm), "size": len(arm),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(amd), "size": len(amd),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }).encode()
    assert put_manifest(client, "multi/app", "latest", manifest_list, DOCKER_LIST).status_code == 201
    r = client.get("/v2/multi/app/manifests/latest", headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"})
    assert r.headers["content-type"] == DOCKER_LIST
    # a client that does not read lists gets the linux/amd64 image
    r = client.get("/v2/multi/app/manifests/latest", headers={"Accept": DOCKER_MANIFEST})
    assert r.headers["content-type"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == sha256(amd)


def test_oci_index_of_indexes(client: TestClient) -> None:
    image = image_manifest(client, "idx/app")
    put_manifest(client, "idx/app", sha256(image), image)
    inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(image), "size": len(image)}]}).encode()
    assert put_manifest(client, "idx/app", sha256(inner), inner, OCI_INDEX).status_code == 201
    outer = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha256(inner), "size": len(inner)}]}).encode()
    assert put_manifest(client, "idx/app", "nested", outer, OCI_INDEX).status_code == 201
    assert client.get("/v2/idx/app/manifests/nested").content == outer


def test_missing_references(client: TestClient) -> None:
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"c"), "size": 1},
        "layers": [],
    }).encode()
    r = put_manifest(client, "team/app", "v1", body)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"m"), "size": 1}]}).encode()
    r = put_manifest(client, "team/app", "v1", index, OCI_INDEX)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    # a blob in another repository does not count
    other = image_manifest(client, "team/other")
    r = put_manifest(client, "team/app", "v1", other)
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_invalid_manifests(client: TestClient) -> None:
    cases = [
        b"not json",
        b"[1, 2]",
        json.dumps({"schemaVersion": 1, "name": "x"}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "x/y", "digest": "sha256:zz", "size": 1}, "layers": []}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "x/y", "digest": sha256(b"a"), "size": -1}, "layers": []}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
    ]
    for body in cases:
        r = put_manifest(client, "team/app", "bad", body)
        assert r.status_code == 400, body
        assert error_code(r) == "MANIFEST_INVALID", body
    r = put_manifest(client, "team/app", "bad", b"{}", "application/vnd.unknown+json")
    assert error_code(r) == "MANIFEST_INVALID"


def test_too_large_manifest(client: TestClient) -> None:
    r = put_manifest(client, "team/app", "big", b" " * (4 * 1024 * 1024 + 1))
    assert r.status_code == 413


def test_put_by_digest_must_match(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    r = put_manifest(client, "team/app", sha256(b"other"), body)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_invalid_tag(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    r = put_manifest(client, "team/app", "-bad", body)
    assert r.status_code == 400
    r = client.put(f"/v2/team/app/manifests/{sha256(body)}?tag=ok&tag=.bad", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert error_code(r) == "TAG_INVALID"


def test_put_with_several_tags(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    r = client.put(f"/v2/team/app/manifests/{sha256(body)}?tag=a&tag=b", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert r.headers["oci-tag"] == "a, b"
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["a", "b"]


def test_unknown_manifest(client: TestClient) -> None:
    r = client.get("/v2/team/app/manifests/nope")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get(f"/v2/team/app/manifests/{sha256(b'x')}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"


def test_delete_tag_then_digest(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    put_manifest(client, "team/app", "v1", body)
    put_manifest(client, "team/app", "v2", body)
    digest = sha256(body)
    assert client.delete("/v2/team/app/manifests/v1").status_code == 202
    assert client.get("/v2/team/app/manifests/v1").status_code == 404
    assert client.get(f"/v2/team/app/manifests/{digest}").status_code == 200
    assert client.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/team/app/manifests/{digest}").status_code == 404
    assert client.get("/v2/team/app/manifests/v2").status_code == 404
    assert client.delete(f"/v2/team/app/manifests/{digest}").status_code == 404
    assert client.delete("/v2/team/app/manifests/v9").status_code == 404


def test_tags_pagination(client: TestClient) -> None:
    body = image_manifest(client, "team/app")
    for tag in ["b", "a", "c", "e", "d"]:
        put_manifest(client, "team/app", tag, body)
    assert client.get("/v2/team/app/tags/list").json() == {"name": "team/app", "tags": ["a", "b", "c", "d", "e"]}
    r = client.get("/v2/team/app/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["link"] == '</v2/team/app/tags/list?last=b&n=2>; rel="next"'
    r = client.get("/v2/team/app/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["c", "d"]
    r = client.get("/v2/team/app/tags/list?n=2&last=d")
    assert r.json()["tags"] == ["e"] and "link" not in r.headers
    assert client.get("/v2/team/app/tags/list?n=0").json()["tags"] == []
    assert error_code(client.get("/v2/team/app/tags/list?n=-1")) == "PAGINATION_NUMBER_INVALID"
    assert error_code(client.get("/v2/team/app/tags/list?n=x")) == "PAGINATION_NUMBER_INVALID"
    r = client.get("/v2/team/nothing/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog_lexical_order_and_pages(client: TestClient) -> None:
    body = image_manifest(client, "seed")
    names = ["a", "a-c", "a/b", "a/b/c", "b", "a.x", "z/y/x", "m/n"]
    for name in names:
        image = image_manifest(client, name)
        assert put_manifest(client, name, "t", image).status_code == 201
    put_manifest(client, "seed", "t", body)
    expected = sorted([*names, "seed"])
    assert client.get("/v2/_catalog").json()["repositories"] == expected
    walked: list[str] = []
    url = "/v2/_catalog?n=2"
    while url:
        r = client.get(url)
        walked += r.json()["repositories"]
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
    assert walked == expected


def test_referrers(client: TestClient) -> None:
    subject = image_manifest(client, "team/app")
    subject_digest = sha256(subject)
    # a referrer may be pushed before its subject exists
    artifact = image_manifest(client, "team/app", [b"sbom"], subject={
        "mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject)},
        artifactType="application/vnd.example.sbom", annotations={"k": "v"})
    r = put_manifest(client, "team/app", sha256(artifact), artifact)
    assert r.status_code == 201
    assert r.headers["oci-subject"] == subject_digest
    put_manifest(client, "team/app", "v1", subject)
    signature = image_manifest(client, "team/app", [b"sig"], subject={
        "mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject)},
        config=b"{}")
    put_manifest(client, "team/app", sha256(signature), signature)
    r = client.get(f"/v2/team/app/referrers/{subject_digest}")
    assert r.status_code == 200
    assert r.headers["content-type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert by_digest[sha256(artifact)]["artifactType"] == "application/vnd.example.sbom"
    assert by_digest[sha256(artifact)]["annotations"] == {"k": "v"}
    assert by_digest[sha256(signature)]["artifactType"] == "application/vnd.oci.image.config.v1+json"
    r = client.get(f"/v2/team/app/referrers/{subject_digest}?artifactType=application/vnd.example.sbom")
    assert [d["digest"] for d in r.json()["manifests"]] == [sha256(artifact)]
    assert r.headers["oci-filters-applied"] == "artifactType"
    client.delete(f"/v2/team/app/manifests/{sha256(artifact)}")
    r = client.get(f"/v2/team/app/referrers/{subject_digest}")
    assert [d["digest"] for d in r.json()["manifests"]] == [sha256(signature)]
    empty = client.get(f"/v2/team/app/referrers/{sha256(b'none')}")
    assert empty.status_code == 200 and empty.json()["manifests"] == []
    assert client.get("/v2/team/app/referrers/sha256:bad").status_code == 400


def test_foreign_layers_follow_url_policy(tmp_path) -> None:
    """Any http(s) URL by default; a configured ``allow`` list restricts, ``deny`` always wins."""
    def push(root, validation, url: str) -> int:
        foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                   "digest": sha256(b"win"), "size": 3, "urls": [url]}
        with make_client(root, validation=validation) as c:
            body = json.loads(image_manifest(c, "win/app", media_type=DOCKER_MANIFEST))
            body["layers"].append(foreign)
            r = put_manifest(c, "win/app", "v1", json.dumps(body).encode(), DOCKER_MANIFEST)
            if r.status_code != 201:
                assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
            return r.status_code

    good = "https://example.test/layer"
    cases = [({}, good, 201), ({}, "ftp://example.test/layer", 400), ({}, good + "#frag", 400),
             ({}, "https:///nohost", 400),
             ({"manifests": {"urls": {"allow": []}}}, good, 400),
             ({"manifests": {"urls": {"allow": ["^https://other\\.test/"]}}}, good, 400),
             ({"manifests": {"urls": {"allow": ["^https://example\\.test/"]}}}, good, 201),
             ({"manifests": {"urls": {"deny": ["example"]}}}, good, 400)]
    for i, (validation, url, status) in enumerate(cases):
        assert push(tmp_path / str(i), validation, url) == status, (validation, url)


def test_bad_url_pattern_is_a_config_error() -> None:
    from registry.config import ConfigError, parse

    with pytest.raises(ConfigError, match="validation.manifests.urls.allow"):
        parse({"validation": {"manifests": {"urls": {"allow": ["(unclosed"]}}}})


def push_subject_and_artifact(root) -> tuple[bytes, bytes]:
    with make_client(root) as c:
        subject = image_manifest(c, "team/app")
        put_manifest(c, "team/app", "v1", subject)
        artifact = image_manifest(c, "team/app", [b"sbom"], subject={
            "mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)},
            artifactType="application/vnd.example.sbom")
        put_manifest(c, "team/app", sha256(artifact), artifact)
    return subject, artifact


def listed_referrers(root, subject: bytes) -> list[tuple[str, str]]:
    with make_client(root) as c:
        listed = c.get(f"/v2/team/app/referrers/{sha256(subject)}").json()["manifests"]
    return [(d["digest"], d.get("artifactType", "")) for d in listed]


def test_referrers_index_is_rebuilt_from_manifests(tmp_path, capsys) -> None:
    import shutil

    from registry.cli import main

    subject, artifact = push_subject_and_artifact(tmp_path)
    # as if another program (Distribution) had written the manifests: no index at all
    shutil.rmtree(tmp_path / "docker/registry/v2/repositories/team/app/_referrers")
    config = tmp_path / "config.yml"
    config.write_text(f"storage: {{filesystem: {{rootdirectory: '{tmp_path}'}}}}\n")
    assert main(["rebuild-index", str(config)]) == 0
    assert "1 entries written" in capsys.readouterr().out
    assert listed_referrers(tmp_path, subject) == [(sha256(artifact), "application/vnd.example.sbom")]


def test_referrers_written_behind_our_back_are_caught_up_on_read(tmp_path) -> None:
    """Distribution writes revisions but no index: the first referrers query indexes them once."""
    import shutil

    subject, artifact = push_subject_and_artifact(tmp_path)
    referrers = tmp_path / "docker/registry/v2/repositories/team/app/_referrers"
    shutil.rmtree(referrers)
    assert listed_referrers(tmp_path, subject) == [(sha256(artifact), "application/vnd.example.sbom")]
    scanned = (referrers / "_scanned").read_text().split()
    assert sorted(scanned) == sorted([sha256(subject), sha256(artifact)])
    # a revision already scanned is not parsed again: its removed entry stays removed
    shutil.rmtree(referrers / "sha256")
    assert listed_referrers(tmp_path, subject) == []
    # and a manifest deleted behind our back disappears although its entry remains
    (referrers / "_scanned").unlink()
    assert len(listed_referrers(tmp_path, subject)) == 1
    shutil.rmtree(tmp_path / f"docker/registry/v2/repositories/team/app/_manifests/revisions/sha256/{sha256(artifact)[7:]}")
    assert listed_referrers(tmp_path, subject) == []
