"""The mirror's counters: hits, misses, stale serves and upstream fetches, by kind (never by repository)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY

from .conftest import Mirror, Upstream, pull, push_image


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_hits_misses_stale_and_fetches_are_counted(upstream: Upstream, start_mirror: Callable[..., Mirror]) -> None:
    push_image(upstream.url, "team/app", "v1", [b"one", b"two"])
    mirror = start_mirror({"upstreams": [{"prefix": "up", "url": upstream.url, "ttl": "0s"}]})
    keys = [("manifest", "miss"), ("manifest", "revalidated"), ("manifest", "stale"), ("blob", "miss"),
            ("blob", "hit")]
    before = {k: count("moorage_mirror_requests_total", kind=k[0], outcome=k[1]) for k in keys}
    fetched = count("moorage_mirror_upstream_fetches_total", kind="blob", result="ok")
    with mirror.client() as c:
        pull(c, "up/team/app", "v1")  # everything fetched
        mirror.settle()
        pull(c, "up/team/app", "v1")  # TTL 0: the tag is revalidated, the blobs are stored
        upstream.server.stop()
        pull(c, "up/team/app", "v1")  # the upstream is gone: served stale
    moved = {k: count("moorage_mirror_requests_total", kind=k[0], outcome=k[1]) - before[k] for k in keys}
    assert moved == {("manifest", "miss"): 1, ("manifest", "revalidated"): 1, ("manifest", "stale"): 1,
                     ("blob", "miss"): 3, ("blob", "hit"): 6}
    assert count("moorage_mirror_upstream_fetches_total", kind="blob", result="ok") == fetched + 3
