"""Nothing one client sends stalls everyone else (issue 24, items 1-3): while each attack below runs against a
real `moorage serve`, the watchdog's concurrent `GET /v2/` are all answered within a second.

The registry is written straight to disk: REPOSITORIES repositories and one repository with TAGS tags,
what showed each stall before its fix (a usage report walked the whole tree on the event loop; search
scanned the whole catalog per request; a tag page read every tag; the manifest nesting check was
quadratic).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .trees import write_registry, write_tags
from .watchdog import LoopWatchdog

REPOSITORIES = 2000
TAGS = 10_009
TAGGED = "many/tags"
ATTACKERS = 4
ATTACK_SECONDS = 6.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# issue 24's body: an unterminated string of escaped quotes (64 KB), and larger kin up to 1 MiB
NESTING_BOMBS = [b'"' + b'\\"' * 32_000, b'"' + b'\\"' * (1 << 19), b'"["[' * (1 << 18), b"[" * (1 << 20)]

Attack = Callable[[httpx.AsyncClient, int], Awaitable[int]]


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("event-loop") / "root"
    write_registry(root, REPOSITORIES)
    write_tags(root, TAGGED, TAGS)
    return root


async def attack(url: str, request: Attack, seconds: float = ATTACK_SECONDS, clients: int = ATTACKERS) -> Counter[int]:
    """``clients`` loops sending ``request`` for ``seconds``; how often each status came back."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient, number: int) -> None:
        i = number
        while True:  # at least once
            statuses[await request(client, i)] += 1
            i += clients
            if time.monotonic() >= deadline:
                return

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await asyncio.gather(*(loop(client, n) for n in range(clients)))
    return statuses


def attacked(url: str, request: Attack, **options: float) -> Counter[int]:
    with LoopWatchdog(url) as watchdog:
        statuses = asyncio.run(attack(url, request, **options))  # type: ignore[arg-type]
    print(f"\n{watchdog.summary()}; answers {dict(statuses)}")
    watchdog.check()
    return statuses


def test_manifests_nested_in_strings_do_not_stall_the_server(start_moorage) -> None:  # type: ignore[no-untyped-def]
    server = start_moorage()

    async def put(client: httpx.AsyncClient, i: int) -> int:
        body = NESTING_BOMBS[i % len(NESTING_BOMBS)]
        r = await client.put(f"/v2/bomb/manifests/t{i % 7}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text[:300]
        return r.status_code

    assert sum(attacked(server.url, put).values()) >= len(NESTING_BOMBS)


def test_usage_reports_do_not_stall_the_server(start_moorage, big_root: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_moorage(root=big_root)

    async def usage(client: httpx.AsyncClient, i: int) -> int:
        r = await client.get("/api/v1/usage")
        assert r.status_code == 200 and len(r.json()["repositories"]) == REPOSITORIES + 1, r.text[:300]
        return r.status_code

    attacked(server.url, usage)


def test_searches_do_not_stall_the_server(start_moorage, big_root: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_moorage(root=big_root)

    async def search(client: httpx.AsyncClient, i: int) -> int:
        term = ("repo1", "zzz", "ns1")[i % 3]
        r = await client.get("/v1/search", params={"q": term, "n": 25})
        assert r.status_code == 200, r.text[:300]
        expected = {"repo1": 1111, "zzz": 0, "ns1": 1100}[term]  # repo1, repo1N..., nsK with K = 1 or 1x
        assert r.json()["num_results"] == expected, (term, r.json()["num_results"])
        return r.status_code

    attacked(server.url, search)


def test_web_ui_scans_do_not_stall_the_server(start_moorage, big_root: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_moorage(root=big_root)
    pages = ["/ui/?q=zzz", "/ui/search?q=zzz", "/ui/usage", "/ui/search?q=image%20123", f"/ui/r/{TAGGED}"]

    async def browse(client: httpx.AsyncClient, i: int) -> int:
        r = await client.get(pages[i % len(pages)])
        assert r.status_code == 200, r.text[:300]
        return r.status_code

    attacked(server.url, browse)


def test_tag_pages_cost_a_page_not_the_whole_list(start_moorage, big_root: Path) -> None:  # type: ignore[no-untyped-def]
    """All 10,009 tags paged by 7 (1,430 requests each; 340 s before the fix) arrive complete and in
    order, for several clients at once."""
    server = start_moorage(root=big_root)
    lists: list[list[str]] = []

    async def page_through(client: httpx.AsyncClient, i: int) -> int:
        url: str | None = f"/v2/{TAGGED}/tags/list?n=7"
        tags: list[str] = []
        while url:
            r = await client.get(url)
            assert r.status_code == 200, r.text[:300]
            tags += r.json()["tags"]
            link = r.headers.get("link")
            url = link.split(";")[0].strip("<>") if link else None
        lists.append(tags)
        return r.status_code

    attacked(server.url, page_through, seconds=0)  # each client pages through once
    assert len(lists) == ATTACKERS
    for tags in lists:
        assert tags == sorted(["latest", *(f"t{n:05d}" for n in range(TAGS - 1))])


def test_the_watchdog_and_the_lag_metric_with_worker_processes(start_moorage, big_root: Path) -> None:  # type: ignore[no-untyped-def]
    """Two worker processes: the probes reach both (a new connection each), the attack still stalls
    neither, and /metrics adds up both workers' event loop lag samples."""
    server = start_moorage({"http": {"workers": 2, "metrics": {"enabled": True}}}, root=big_root)

    async def mixed(client: httpx.AsyncClient, i: int) -> int:
        path = ("/api/v1/usage", "/v1/search?q=repo1", f"/v2/{TAGGED}/tags/list?n=7&last=t0{i % 9}000")[i % 3]
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        return r.status_code

    attacked(server.url, mixed)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    lag = families["moorage_event_loop_lag_seconds"].samples
    count = next(s.value for s in lag if s.name.endswith("_count"))
    within = next(s.value for s in lag if s.name.endswith("_bucket") and s.labels["le"] == "2.5")
    assert count > 0 and within == count, lag  # sampled, and no loop held 2.5 s (a generous fault bound)
