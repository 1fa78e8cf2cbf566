"""The web UI in a real browser: Playwright driving Debian's chromium headless against `moorage serve`,
with images pushed by real docker and skopeo and a referrer pushed with oras in the same test.

Screenshots of the main pages go to $MOORAGE_ARTIFACTS/ui (else the test's tmp dir) and are named in
the output. Chromium missing: the test is skipped loudly, and FAILS in CI (.ci/setup.d/ui.sh
installs it). Page timings (10 000 repositories, a manifest page) are measured and reported, not
asserted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from storage import paths
from storage.digests import digest_bytes, parse_digest
from tests.auth.e2e_support import USERS, auth_port, login, write_auth_files

from .clients import Docker, Skopeo
from .helpers import free_port, shoot, unique
from .images import ImageFactory
from .servers import ServerFactory

pytestmark = pytest.mark.e2e
XSS = "<script>window.__xss = 1</script>"
SIGNATURE_TYPE = "application/vnd.example.signature.v1+json"


def repositories(page: Any) -> list[str]:
    return page.locator("a.repo").all_inner_texts()


def test_browse_log_in_delete_and_rights(
    start_moorage: ServerFactory, docker: Docker, skopeo: Skopeo, images: ImageFactory, oras: ModuleType,
    chromium: Any, artifacts: Path, tmp_path: Path,
) -> None:
    files = write_auth_files(tmp_path / "auth")
    reg = start_moorage({"auth": files.basic()}, port=auth_port())
    app = f"alice/{unique('web')}"
    assert login(docker, reg.host, "alice", USERS["alice"]).returncode == 0
    img = docker.load(images.docker_archive(f"e2e/{unique('ui')}:1", labels={"org.example.note": XSS}).path)
    for tag in ("1.0", "2.0"):
        docker.tag(img, reg.ref(app, tag))
        digest, _ = docker.push(reg.ref(app, tag))
    docker.tag(img, reg.ref("public/base", "1"))
    docker.push(reg.ref("public/base", "1"))
    index = images.oci_index(platforms=("linux/amd64", "linux/arm64"))
    skopeo.copy(index.ref, f"docker://{reg.ref('alice/multi', 'v1')}", "--all", "--dest-creds",
                f"alice:{USERS['alice']}")
    registry = oras.connect(reg.host, user="alice", password=USERS["alice"])
    signature = tmp_path / "signature.json"
    signature.write_text('{"signed": true}')
    subject = oras.subject_of(registry, reg.ref(app, "1.0"))
    referrer = oras.push(registry, reg.ref(app, "sig"), [signature], config_media_type=SIGNATURE_TYPE,
                         subject=subject).digest

    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=reg.url)
    page = context.new_page()
    base = f"{reg.url}/ui"

    # anonymous: what the rules let anyone pull
    page.goto(reg.url + "/")
    assert page.url == f"{base}/"
    assert repositories(page) == ["public/base"]
    page.goto(f"{base}/r/{app}")
    assert page.title().startswith("Not found")

    # log in as alice
    page.goto(f"{base}/")
    page.click("text=Log in")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit] >> text=Log in")
    assert "Wrong user name or password" in page.inner_text("main")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", USERS["alice"])
    page.click("button[type=submit] >> text=Log in")
    assert page.inner_text("[data-testid=user]") == "alice"
    assert repositories(page) == sorted(["alice/multi", app, "public/base"])
    shoot(page, artifacts, "repositories")

    # filter
    page.fill("input[aria-label='Filter repositories']", "multi")
    page.press("input[aria-label='Filter repositories']", "Enter")
    assert repositories(page) == ["alice/multi"]

    # the repository docker pushed: tags, then the image with its layers and platform
    page.goto(f"{base}/r/{app}")
    assert set(page.locator("a.tag").all_inner_texts()) == {"1.0", "2.0", "sig"}
    shoot(page, artifacts, "repository")
    page.click("a.tag >> text=1.0")
    assert page.inner_text("[data-testid=digest]") == digest
    assert page.locator("[data-testid=layers] tbody tr").count() == 4  # three layers and the config
    assert page.inner_text("[data-testid=platforms]").strip() == "linux/amd64"
    labels = page.inner_text("[data-testid=labels]")
    assert XSS in labels and page.evaluate("window.__xss") is None  # shown as text, never run
    page.click(f"button[data-copy='docker pull {reg.host}/{app}:1.0']")
    assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {reg.host}/{app}:1.0"
    shoot(page, artifacts, "manifest")

    # the referrer oras pushed, grouped by its artifact type, and back to its subject
    group = page.locator("[data-testid=referrers]")
    assert SIGNATURE_TYPE in group.inner_text()
    group.locator(f"a[href$='@{referrer}']").click()
    assert page.inner_text("[data-testid=digest]") == referrer
    page.click(f"a[href$='@{digest}']")
    assert page.inner_text("[data-testid=digest]") == digest

    # an index skopeo pushed: each platform
    page.goto(f"{base}/r/alice/multi:v1")
    children = page.inner_text("[data-testid=children]")
    assert "amd64" in children and "arm64" in children
    shoot(page, artifacts, "index")

    # delete a tag, with confirmation
    page.goto(f"{base}/r/{app}")
    page.click("a[aria-label='Delete tag 2.0']")
    assert "Delete tag?" in page.inner_text("main")
    shoot(page, artifacts, "delete-confirmation")
    page.click("[data-testid=confirm-delete]")
    assert "Deleted" in page.inner_text("main")
    assert set(page.locator("a.tag").all_inner_texts()) == {"1.0", "sig"}
    tags = httpx.get(f"{reg.url}/v2/{app}/tags/list", auth=("alice", USERS["alice"])).json()["tags"]
    assert tags == ["1.0", "sig"]

    # log out, then bob: neither alice's repository nor a delete button on what he may only pull
    page.click("text=Log out")
    assert repositories(page) == ["public/base"]
    page.click("text=Log in")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", USERS["bob"])
    page.click("button[type=submit] >> text=Log in")
    assert app not in repositories(page) and "public/base" in repositories(page)
    page.goto(f"{base}/r/{app}")
    assert page.title().startswith("Not found")
    page.goto(f"{base}/r/public/base")
    assert page.locator("text=Delete").count() == 0
    page.goto(f"{base}/r/public/base:1")
    assert page.locator("text=Delete").count() == 0
    context.close()


def test_page_timings_with_10000_repositories(
    start_moorage: ServerFactory, chromium: Any, artifacts: Path, tmp_path: Path,
) -> None:
    """10 000 repositories written in the storage layout; the list's first and a late page, a filter, a
    repository and a manifest page are timed in the browser (navigation to load) and as the HTML alone,
    best of a few, and reported."""
    root = tmp_path / "data"
    digest = seed_layout(root, 10_000)
    reg = start_moorage({"storage": {"filesystem": {"rootdirectory": str(root)}}})
    page = chromium.new_page(viewport={"width": 1280, "height": 860})
    base = f"{reg.url}/ui"
    page.goto(f"{base}/")  # warm-up (templates, first listings)
    timings: dict[str, float] = {}
    for name, path in (
        ("repository list, first page (50 of 10000)", "/"),
        ("repository list, page after repo-07000", "/?last=team/repo-07000"),
        ("repository list, filter matching 1 name", "/?q=repo-09999"),
        ("repository page", "/r/team/repo-05000"),
        ("manifest page", f"/r/team/repo-05000@{digest}"),
    ):
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            page.goto(base + path, wait_until="load")
            samples.append(time.perf_counter() - started)
        timings[f"{name} (browser, to load)"] = min(samples)
        assert page.locator("main").count() == 1
        served = []
        with httpx.Client(base_url=base) as http:
            for _ in range(5):
                started = time.perf_counter()
                assert http.get(path).status_code == 200
                served.append(time.perf_counter() - started)
        timings[f"{name} (server, HTML only)"] = min(served)
    page.goto(f"{base}/")
    assert len(repositories(page)) == 50
    shoot(page, artifacts, "repositories-10000")
    report = artifacts / "timings.json"
    report.write_text(json.dumps({k: round(v * 1000, 1) for k, v in timings.items()}, indent=2))
    for name, seconds in timings.items():
        print(f"timing: {name}: {seconds * 1000:.0f} ms")
    page.close()


def seed_layout(root: Path, count: int) -> str:
    """``count`` repositories tagged ``latest`` to one small image, written as Distribution lays them out."""
    def write(path: str, data: bytes) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def blob(data: bytes) -> str:
        digest = digest_bytes(data)
        write(paths.blob_data(digest), data)
        return str(digest)

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}}).encode()
    layer = os.urandom(4096)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob(layer),
                    "size": len(layer)}],
    }).encode()
    digest_text = blob(manifest)
    digest = parse_digest(digest_text)
    link = digest_text.encode()
    for i in range(count):
        name = f"team/repo-{i:05d}"
        write(paths.revision_link(name, digest), link)
        write(paths.tag_current_link(name, "latest"), link)  # (no tag index link: nothing here reads it)
    return digest_text



def test_replication_page_runs_a_rule_for_admins(
    start_moorage: ServerFactory, chromium: Any, artifacts: Path, tmp_path: Path,
) -> None:
    """The replication page: rules for admins only, *Run now* queues an execution, which succeeds and
    shows its counts; a failing one shows each failed item's error."""
    files = write_auth_files(tmp_path / "auth")
    there = start_moorage()
    rules = [{"name": "to-there", "direction": "push", "remote": "there", "repositories": ["alice/**"]},
             {"name": "to-nowhere", "direction": "push", "remote": "nowhere", "repositories": ["alice/**"],
              "retry": {"attempts": 0}}]
    remotes = [{"name": "there", "url": there.url}, {"name": "nowhere", "url": f"http://127.0.0.1:{free_port()}"}]
    access = {**files.basic()["access"], "admins": ["alice"]}
    here = start_moorage({"auth": {**files.basic(), "access": access},
                          "replication": {"remotes": remotes, "rules": rules, "poll": "0.5s", "lease": "3s"}})
    repo = f"alice/{unique('repl')}"
    config, layer = b'{"os":"linux","architecture":"amd64"}', b"replicated layer"
    with httpx.Client(base_url=here.url, auth=("alice", USERS["alice"])) as c:
        for blob in (config, layer):
            assert c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": str(digest_bytes(blob))},
                          content=blob).status_code == 201
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": str(digest_bytes(config)), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": str(digest_bytes(layer)), "size": len(layer)}]}
        r = c.put(f"/v2/{repo}/manifests/v1", content=json.dumps(manifest),
                  headers={"Content-Type": manifest["mediaType"]})
        assert r.status_code == 201, r.text

    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    base = f"{here.url}/ui"

    def log_in(user: str) -> None:
        page.goto(f"{base}/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", USERS[user])
        page.click("button[type=submit] >> text=Log in")

    log_in("bob")  # no admin: no link, no page
    assert page.locator("nav >> text=Replication").count() == 0
    page.goto(f"{base}/replication")
    assert page.title().startswith("Not found")
    page.click("text=Log out")

    log_in("alice")
    page.click("nav >> text=Replication")
    assert page.url == f"{base}/replication"
    assert "never run" in page.inner_text("[data-testid=replication-rules]")
    page.click("[data-testid=run-to-there]")
    assert "queued" in page.inner_text("[role=status]")
    page.goto(f"{base}/replication/to-there")
    deadline = time.monotonic() + 30
    while "succeeded" not in page.inner_text("[data-testid=executions]"):
        assert time.monotonic() < deadline, page.inner_text("main")
        time.sleep(0.3)
        page.reload()
    shoot(page, artifacts, "replication-rule")
    page.click("[data-testid=executions] a.mono")
    assert "1 copied" in page.inner_text("[data-testid=counts]")
    with httpx.Client(base_url=there.url) as c:
        assert c.head(f"/v2/{repo}/manifests/v1", headers={"Accept": manifest["mediaType"]}).status_code == 200

    page.goto(f"{base}/replication/to-nowhere")
    page.click("[data-testid=run-rule]")
    deadline = time.monotonic() + 30
    while "failed" not in page.inner_text("[data-testid=executions]"):
        assert time.monotonic() < deadline, page.inner_text("main")
        time.sleep(0.3)
        page.reload()
    page.click("[data-testid=executions] a.mono")
    assert "stopped answering" in page.inner_text("[data-testid=execution-error]")
    shoot(page, artifacts, "replication-execution")
    context.close()
