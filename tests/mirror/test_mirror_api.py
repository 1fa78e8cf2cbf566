"""The mirror over HTTP, with a second Moorage as the upstream: caching rules, failures, mixed mode."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .conftest import ACCEPT, OCI_INDEX, Mirror, Upstream, blob_file, pull, push_blob, push_image, push_index, sha256


def test_pull_by_tag_caches_everything(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    digest, _ = push_image(upstream.url, "team/app", "v1", [b"layer-a" * 1000, b"layer-b"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": "1h"}]})
    upstream.recorder.clear()
    with mirror.client() as c:
        got, blobs = pull(c, "up/team/app", "v1")
        assert got == digest
        mirror.settle()
        for d in blobs:
            assert blob_file(mirror.root, d).exists()  # Distribution's layout, in the mirror's storage
        first = len(upstream.recorder.requests)
        assert upstream.recorder.count("GET", "/blobs/") == 3, upstream.recorder.requests
        assert pull(c, "up/team/app", "v1")[0] == digest
        assert pull(c, "up/team/app", digest)[0] == digest
    assert len(upstream.recorder.requests) == first  # warm: no upstream request at all
    with mirror.client() as c:  # cached repositories are ordinary ones; _mirror/ is no repository
        assert c.get("/v2/_catalog").json() == {"repositories": ["up/team/app"]}
    stats = mirror.app.registry.mirror.stats  # type: ignore[union-attr]
    assert stats["manifest.miss"] == 1 and stats["manifest.hit"] == 2
    assert stats["blob.miss"] == 3 and stats["blob.hit"] == 6


def test_single_upstream_mirrors_the_whole_registry(
    upstream: Upstream, start_mirror: Callable[..., Mirror]
) -> None:
    """Distribution's proxy keys: names map 1:1 (library/x is library/x upstream), pushes refused."""
    digest, _ = push_image(upstream.url, "library/nginx", "latest", [b"nginx"])
    mirror = start_mirror({"remoteurl": upstream.url, "ttl": "1h"})
    with mirror.client() as c:
        assert pull(c, "library/nginx", "latest")[0] == digest
        r = c.post("/v2/library/nginx/blobs/uploads/")
        assert r.status_code == 405
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert "mirror" in r.json()["errors"][0]["message"]


def test_mixed_mode(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    """Unmapped namespaces are a normal registry; writes into a mirrored one are refused."""
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    digest, _ = push_image(mirror.url, "local/app", "v1", [b"local"])
    with mirror.client() as c:
        assert pull(c, "local/app", "v1")[0] == digest
        for method, path in [("POST", "/v2/up/x/blobs/uploads/"), ("PUT", "/v2/up/x/manifests/v1"),
                             ("DELETE", f"/v2/up/x/manifests/{digest}")]:
            r = c.request(method, path, content=b"{}")
            assert r.status_code == 405, (method, r.text)
            assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert upstream.recorder.requests == []


def test_upstream_404_passes_through(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        r = c.get("/v2/up/nothing/manifests/latest")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        r = c.get(f"/v2/up/nothing/blobs/{sha256(b'x')}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        r = c.head(f"/v2/up/nothing/blobs/{sha256(b'x')}")
        assert r.status_code == 404
        r = c.get("/v2/up/nothing/tags/list")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_ttl_revalidation_and_moved_tag(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    old, _ = push_image(upstream.url, "team/app", "v1", [b"one"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": "1s"}]})
    rec = upstream.recorder
    with mirror.client() as c:
        assert pull(c, "up/team/app", "v1")[0] == old
        mirror.settle()
        new, _ = push_image(upstream.url, "team/app", "v1", [b"two"])  # the tag moves upstream
        rec.clear()
        assert pull(c, "up/team/app", "v1")[0] == old  # within the TTL: the cached copy, no request
        assert rec.requests == []
        time.sleep(1.1)
        assert pull(c, "up/team/app", "v1")[0] == new  # after it: HEAD sees the move, GET fetches it
        assert rec.count("HEAD", "/manifests/v1") == 1 and rec.count("GET", "/manifests/v1") == 1
        time.sleep(1.1)
        rec.clear()
        r = c.get("/v2/up/team/app/manifests/v1", headers={"Accept": ACCEPT})
        assert r.headers["docker-content-digest"] == new
        assert rec.requests == [("HEAD", "/v2/team/app/manifests/v1")]  # exactly one revalidating HEAD
        stats = mirror.app.registry.mirror.stats  # type: ignore[union-attr]
        assert stats["manifest.revalidated"] == 1
    checked = mirror.root / "docker/registry/v2/repositories/up/team/app/_mirror/tags/v1/checked"
    assert json.loads(checked.read_text())["checked"] > time.time() - 5  # TTL state lives in storage


def test_ttl_state_survives_restart(upstream: Upstream, start_mirror: Callable[..., Mirror], tmp_path: Path,
                                    servers: Callable) -> None:
    """A second replica on the same storage trusts the tag without asking the upstream."""
    push_image(upstream.url, "team/app", "v1", [b"one"])
    proxy = {"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": "1h"}]}
    first = start_mirror(proxy)
    with first.client() as c:
        pull(c, "up/team/app", "v1")
    first.settle()
    from .conftest import moorage

    second = servers(moorage(first.root, proxy=proxy))
    upstream.recorder.clear()
    with httpx.Client(base_url=second.url) as c:
        pull(c, "up/team/app", "v1")
    assert upstream.recorder.requests == []


def test_upstream_down_serves_stale(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    digest, _ = push_image(upstream.url, "team/app", "v1", [b"one"])
    cold, _ = push_image(upstream.url, "team/cold", "v1", [b"cold"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": 0}]})
    with mirror.client() as c:
        pull(c, "up/team/app", "v1")
        mirror.settle()
        upstream.server.stop()
        r = c.get("/v2/up/team/app/manifests/v1", headers={"Accept": ACCEPT})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
        assert r.headers["warning"].startswith("110 ")
        assert pull(c, "up/team/app", digest)[0] == digest  # by digest and blobs: plain hits
        r = c.get("/v2/up/team/cold/manifests/v1")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        r = c.get("/v2/up/team/app/tags/list")
        assert r.status_code == 200 and r.json()["tags"] == ["v1"] and "warning" in r.headers
    assert mirror.app.registry.mirror.stats["manifest.stale"] == 1  # type: ignore[union-attr]


def test_rate_limited_upstream_serves_stale(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    digest, _ = push_image(upstream.url, "team/app", "v1", [b"one"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": 0}]})
    with mirror.client() as c:
        pull(c, "up/team/app", "v1")
        mirror.settle()
        upstream.recorder.fail = 429
        r = c.get("/v2/up/team/app/manifests/v1", headers={"Accept": ACCEPT})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
        assert "warning" in r.headers
        r = c.get("/v2/up/team/other/manifests/v1")
        assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_concurrent_cold_pulls_share_one_fetch(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    layer = os.urandom(8 << 20)
    digest, _ = push_image(upstream.url, "team/big", "v1", [layer])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    upstream.recorder.clear()

    def one(_: int) -> str:
        with mirror.client() as c:
            return pull(c, "up/team/big", "v1")[0]

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(one, range(10))) == {digest}
    rec = upstream.recorder
    assert rec.count("GET", "/blobs/") == 2, rec.requests  # config + layer, once each
    assert rec.count("GET", "/manifests/") == 1, rec.requests


def test_multi_arch_index(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    amd = push_image(upstream.url, "team/multi", None, [b"amd"], "amd64")
    arm = push_image(upstream.url, "team/multi", None, [b"arm"], "arm64")
    index, _ = push_index(upstream.url, "team/multi", "v1", {"amd64": amd, "arm64": arm})
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        r = c.get("/v2/up/team/multi/manifests/v1", headers={"Accept": f"{OCI_INDEX}, {ACCEPT}"})
        assert r.headers["docker-content-digest"] == index
        assert pull(c, "up/team/multi", arm[0])[0] == arm[0]
        # a client that reads no index gets the linux/amd64 image, fetched on the way
        r = c.get("/v2/up/team/multi/manifests/v1",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == amd[0]


def test_ns_parameter_routes_to_upstream(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    """containerd's hosts.toml mirrors send ?ns=<registry host>; the cache lives below the prefix."""
    digest, _ = push_image(upstream.url, "team/app", "v1", [b"one"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    ns = {"ns": upstream.server.host}
    with mirror.client() as c:
        r = c.get("/v2/team/app/manifests/v1", params=ns, headers={"Accept": ACCEPT})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
        for desc in [r.json()["config"], *r.json()["layers"]]:
            assert c.get(f"/v2/team/app/blobs/{desc['digest']}", params=ns).status_code == 200
        assert c.get("/v2/team/app/manifests/v1").status_code == 404  # without ns: the local namespace
        assert pull(c, "up/team/app", "v1")[0] == digest  # the same cache under the prefix
        r = c.post("/v2/team/app/blobs/uploads/", params=ns)
        assert r.status_code == 405


def test_corrupt_upstream_blob_is_never_published(
    start_mirror: Callable[..., Mirror], servers: Callable, tmp_path: Path
) -> None:
    """An upstream sending bytes that do not match the digest: the client fails, nothing is stored."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    good = os.urandom(1 << 20)
    digest = sha256(good)

    async def lying_blob(request):  # type: ignore[no-untyped-def]
        return Response(os.urandom(len(good)), media_type="application/octet-stream")

    liar = servers(Starlette(routes=[Route("/v2/{name:path}/blobs/{digest}", lying_blob)]))
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": liar.url}]})
    with mirror.client() as c:
        try:
            r = c.get(f"/v2/up/x/blobs/{digest}")
            assert sha256(r.content) != digest
        except httpx.HTTPError:
            pass  # the connection was cut: also fine
        mirror.settle()
        assert not blob_file(mirror.root, digest).exists()
        mirror.settle()
    uploads = list(mirror.root.glob("docker/registry/v2/repositories/up/x/_uploads/*"))
    assert uploads == []


def test_blob_range_and_head_on_cold_blob(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    data = os.urandom(300_000)
    digest = push_blob(upstream.url, "team/app", data)
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        h = c.head(f"/v2/up/team/app/blobs/{digest}")
        assert h.status_code == 200 and h.headers["content-length"] == str(len(data))
        assert not blob_file(mirror.root, digest).exists()  # HEAD downloads nothing
        r = c.get(f"/v2/up/team/app/blobs/{digest}", headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == data[100:200]
        mirror.settle()
        assert blob_file(mirror.root, digest).read_bytes() == data  # the whole blob got cached


def test_tags_list_comes_from_upstream(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    for tag in ("a", "b", "c"):
        push_image(upstream.url, "team/app", tag, [b"x"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        r = c.get("/v2/up/team/app/tags/list")
        assert r.json() == {"name": "up/team/app", "tags": ["a", "b", "c"]}
        r = c.get("/v2/up/team/app/tags/list", params={"n": 2})
        assert r.json()["tags"] == ["a", "b"] and "last=b" in r.headers["link"]


def spool_descriptors() -> list[str]:
    """Open descriptors of this process (the mirror runs in it) on download spools."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "moorage-spool-" in target:
            found.append(target)
    return found


def test_cold_empty_blob_leaves_no_spool_open(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    digest = push_blob(upstream.url, "team/app", b"")
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url}]})
    with mirror.client() as c:
        r = c.get(f"/v2/up/team/app/blobs/{digest}")
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
        mirror.settle()
        assert blob_file(mirror.root, digest).read_bytes() == b""
    assert spool_descriptors() == []
