"""The web UI's pages without auth: lists, a repository, a manifest or index, delete, escaping."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import OCI_INDEX, OCI_MANIFEST, image_manifest, make_client, put_manifest
from tests.ui.conftest import SCRIPT, csrf, push_image, push_index, push_referrer


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "root") as c:
        yield c


def test_root_redirects_and_pages_are_self_contained(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and "Repositories" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # air-gapped: every script, style, image and link is the registry's own
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert url.startswith("/ui/"), url
    for asset in ("/ui/static/style.css", "/ui/static/ui.js", "/ui/static/moorage.svg"):
        assert client.get(asset).status_code == 200


def test_ui_can_be_disabled(tmp_path: Path) -> None:
    with make_client(tmp_path / "root", ui={"enabled": False}) as c:
        assert c.get("/ui/").status_code == 404
        assert c.get("/v1/search?q=x").status_code == 200  # docker search stays


def test_repository_list_pages_and_filters(client: TestClient) -> None:
    for i in range(7):
        push_image(client, f"team/app{i}", "1.0")
    push_image(client, "other/thing", "1.0")
    page = client.get("/ui/?n=3")
    names = re.findall(r'class="repo" href="/ui/r/([^"]+)"', page.text)
    assert names == ["other/thing", "team/app0", "team/app1"]
    following = re.search(r'href="/ui/(\?[^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
    page = client.get(f"/ui/{following}")
    assert re.findall(r'class="repo" href="/ui/r/([^"]+)"', page.text) == ["team/app2", "team/app3", "team/app4"]
    page = client.get("/ui/?q=app5")
    assert re.findall(r'class="repo" href="/ui/r/([^"]+)"', page.text) == ["team/app5"]
    row = re.search(r"team/app5</a></td>\s*<td class=\"num\">(\d+)</td>\s*<td class=\"num\">([^<]+)</td>", page.text)
    assert row and row.group(1) == "1" and row.group(2).endswith(("B", "KiB"))
    assert "No repository you may see matches" in client.get("/ui/?q=nothing-like-this").text


def test_repository_page_sorts_and_filters_tags(client: TestClient) -> None:
    push_image(client, "team/app", "b-small", layers=[b"x"])
    push_image(client, "team/app", "a-large", layers=[b"y" * 50_000])
    index, _ = push_index(client, "team/app", "c-multi")
    page = client.get("/ui/r/team/app?sort=tag&order=asc").text
    assert re.findall(r'data-tag="([^"]+)"', page) == ["a-large", "b-small", "c-multi"]
    page = client.get("/ui/r/team/app?sort=size&order=desc").text
    assert re.findall(r'data-tag="([^"]+)"', page)[-1] == "b-small"
    page = client.get("/ui/r/team/app?q=multi").text
    assert re.findall(r'data-tag="([^"]+)"', page) == ["c-multi"]
    assert "linux/arm64/v8" in page and index[:19] in page
    assert "docker pull registry.test/team/app:" in page
    assert client.get("/ui/r/team/nope").status_code == 404
    assert client.get("/ui/r/Bad..Name").status_code == 404


def test_index_page_lists_children_and_referrers_by_artifact_type(client: TestClient) -> None:
    index, children = push_index(client, "team/app", "1.0")
    size = len(client.get("/v2/team/app/manifests/1.0", headers={"Accept": OCI_INDEX}).content)
    sig = push_referrer(client, "team/app", index, OCI_INDEX, size, "application/vnd.dev.cosign.simplesigning.v1+json")
    sbom = push_referrer(client, "team/app", index, OCI_INDEX, size, "application/spdx+json",
                         {"org.example.tool": "syft"})
    page = client.get("/ui/r/team/app:1.0").text
    assert index in page and f"docker pull registry.test/team/app@{index}" in page
    children_table = page[page.index('data-testid="children"'):page.index("</table>", page.index('data-testid="children"'))]
    assert "arm64" in children_table and "v8" in children_table and "amd64" in children_table
    for child in children:
        assert f"/ui/r/team/app@{child}" in children_table
    groups = re.findall(r'data-testid="referrers">\s*<h3 class="mono">([^<]+)</h3>', page)
    assert groups == ["application/spdx+json", "application/vnd.dev.cosign.simplesigning.v1+json"]
    assert f"/ui/r/team/app@{sig}" in page and f"/ui/r/team/app@{sbom}" in page
    referrer = client.get(f"/ui/r/team/app@{sbom}").text
    assert "application/spdx+json" in referrer and f"/ui/r/team/app@{index}" in referrer  # links back
    assert "syft" in referrer


def test_image_page_shows_layers_config_and_history(client: TestClient) -> None:
    digest, _ = push_image(client, "team/app", "1.0", arch="arm64", variant="v8",
                           layers=[b"a" * 2048, b"b" * 10], annotations={"org.example.note": "hello"})
    page = client.get(f"/ui/r/team/app@{digest}").text
    layers = page[page.index('data-testid="layers"'):page.index('</table>', page.index('data-testid="layers"'))]
    assert layers.count("application/vnd.oci.image.layer.v1.tar+gzip") == 2 and "2.0 KiB" in layers
    assert "linux/arm64/v8" in page
    for text in ("/usr/bin/app", "--serve", "APP_ENV=production", "org.opencontainers.image.title",
                 "RUN make install", "2024-05-01T10:00:00Z", "org.example.note", "hello"):
        assert text in page, text
    assert client.get("/ui/r/team/app@sha256:" + "0" * 64).status_code == 404
    assert client.get("/ui/r/team/app:missing").status_code == 404


def test_values_are_escaped(client: TestClient) -> None:
    push_image(client, "team/app", "1.0", labels={SCRIPT: SCRIPT}, annotations={"note": SCRIPT})
    for path in ("/ui/r/team/app:1.0", "/ui/search?q=script", f"/ui/?q={SCRIPT}", f"/ui/r/team/app?q={SCRIPT}"):
        page = client.get(path).text
        assert SCRIPT not in page, path
    page = client.get("/ui/r/team/app:1.0").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_delete_tag_needs_confirmation_and_csrf(client: TestClient) -> None:
    digest, _ = push_image(client, "team/app", "1.0")
    push_image(client, "team/app", "2.0")
    confirm = client.get("/ui/delete/team/app:1.0")
    assert confirm.status_code == 200 and "Delete tag?" in confirm.text
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["1.0", "2.0"]  # GET changes nothing
    assert client.post("/ui/delete/team/app:1.0", data={"csrf": "forged"}).status_code == 403
    assert client.post("/ui/delete/team/app:1.0", data={"csrf": csrf(confirm.text)},
                       headers={"Origin": "http://evil.test"}).status_code == 403
    done = client.post("/ui/delete/team/app:1.0", data={"csrf": csrf(confirm.text)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/ui/r/team/app?deleted=")
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["2.0"]
    assert client.get(f"/v2/team/app/manifests/{digest}").status_code == 200  # a tag delete keeps the manifest
    assert "Deleted" in client.get(done.headers["location"]).text


def test_delete_manifest_removes_its_tags(client: TestClient) -> None:
    digest, _ = push_image(client, "team/app", "1.0")
    confirm = client.get(f"/ui/delete/team/app@{digest}")
    assert "Delete manifest?" in confirm.text and "1.0" in confirm.text
    assert client.post(f"/ui/delete/team/app@{digest}", data={"csrf": csrf(confirm.text)}).status_code == 200
    assert client.get(f"/v2/team/app/manifests/{digest}").status_code == 404
    assert client.get("/v2/team/app/tags/list").json()["tags"] == []


def test_no_delete_when_deletes_are_disabled(tmp_path: Path) -> None:
    with make_client(tmp_path / "root", storage={"filesystem": {"rootdirectory": str(tmp_path / "root")},
                                                 "delete": {"enabled": False}}) as c:
        push_image(c, "team/app", "1.0")
        assert "/ui/delete/" not in c.get("/ui/r/team/app").text
        assert "/ui/delete/" not in c.get("/ui/r/team/app:1.0").text
        assert c.get("/ui/delete/team/app:1.0").status_code == 403
        assert c.post("/ui/delete/team/app:1.0", data={"csrf": "x"}).status_code == 403
        assert c.get("/v2/team/app/tags/list").json()["tags"] == ["1.0"]


def test_search_box_finds_names_tags_and_labels(client: TestClient) -> None:
    push_image(client, "team/frontend", "1.0")
    push_image(client, "team/app", "release-candidate")
    push_image(client, "team/db", "1.0", labels={"org.opencontainers.image.vendor": "Acme Corp"})
    page = client.get("/ui/search?q=front").text
    assert re.findall(r'class="repo" href="/ui/r/([^"]+)"', page) == ["team/frontend"]
    assert "tag release-candidate" in client.get("/ui/search?q=candidate").text
    page = client.get("/ui/search?q=acme").text
    assert re.findall(r'class="repo" href="/ui/r/([^"]+)"', page) == ["team/db"]
    assert "Acme Corp" in page
    push_index(client, "team/multi", "1.0")  # labels of an index's images count for its tags
    page = client.get("/ui/search?q=image.title").text
    assert "team/multi" in re.findall(r'class="repo" href="/ui/r/([^"]+)"', page)


def test_media_types_are_not_confused(client: TestClient) -> None:
    digest, _ = push_image(client, "team/app", "1.0")
    page = client.get("/ui/r/team/app").text
    assert OCI_MANIFEST in page and ">image<" in page and digest[:19] in page


def test_usage_page_counts_shared_blobs_once(client: TestClient) -> None:
    shared = b"s" * 4096
    push_image(client, "team/a", "1.0", layers=[shared, b"a" * 1024])
    push_image(client, "team/b", "1.0", layers=[shared, b"b" * 2048])
    push_image(client, "solo/c", "1.0", layers=[b"c" * 100])
    page = client.get("/ui/usage").text
    namespaces = page[page.index('data-testid="namespaces"'):page.index("</table>", page.index('data-testid="namespaces"'))]
    assert re.findall(r'<td class="mono">([^<]+)</td>', namespaces) == ["team", "solo"]
    team = re.search(r'<td class="mono">team</td><td class="num">([^<]+)</td>', namespaces).group(1)
    kib = float(team.removesuffix(" KiB"))
    assert 7.0 < kib < 11.0  # 4 KiB shared once + 1 + 2 KiB, the config and two manifests (twice: over 11)
    assert "/ui/r/solo/c" in page


MALFORMED_CONFIGS = {
    "list-config": {"architecture": "amd64", "os": "linux", "config": ["x"]},
    "list-labels": {"architecture": "amd64", "os": "linux", "config": {"Labels": ["a=b"], "Env": ["A=1"]}},
    "odd-types": {"architecture": 7, "os": "linux", "created": {"at": 1},
                  "config": {"Env": 5, "Entrypoint": {"x": 1}, "Cmd": [1, 2], "ExposedPorts": ["80"],
                             "Labels": {"ok": "yes", "bad": 3}},
                  "history": "yesterday"},
    "bad-history": {"architecture": "arm64", "os": "linux", "history": [1, {"created_by": ["x"]}, {"created": 5}]},
    "not-an-object": ["just", "a", "list"],
}


def test_malformed_image_configs_are_shown_as_malformed(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 24, item 12: one config of the wrong shape made /ui/, the UI's search and docker search answer
    500 for everyone who could see it."""
    for tag, config in MALFORMED_CONFIGS.items():
        body = image_manifest(client, "odd/app", layers=[tag.encode()], config=json.dumps(config).encode())
        assert put_manifest(client, "odd/app", tag, body).status_code == 201
    with caplog.at_level(logging.ERROR):
        for path in ["/ui/", "/ui/r/odd/app", "/ui/search?q=odd", "/ui/search?q=yes", "/ui/usage"]:
            assert client.get(path).status_code == 200, path
        r = client.get("/v1/search", params={"q": "odd"})
        assert r.status_code == 200 and r.json()["num_results"] == 1
        for tag in MALFORMED_CONFIGS:
            page = client.get(f"/ui/r/odd/app:{tag}")
            assert page.status_code == 200, tag
            assert 'data-testid="config-problems"' in page.text, tag
        page = client.get("/ui/r/odd/app:odd-types").text
        assert "config.Env is not a list of strings" in page and "<th class=\"mono\">ok</th>" in page
        assert "linux" in page  # what could be read is shown
        # a static file that is not there is a 404, not a 500 with a traceback
        assert client.get("/ui/static/missing.css").status_code == 404
        assert client.get("/ui/static/").status_code == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
