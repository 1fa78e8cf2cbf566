"""/metrics of a real `moorage serve` scraped around a docker push and pull, and with two worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .clients import Docker
from .helpers import free_port
from .images import ImageFactory
from .servers import RegistryProcess

MANIFEST = "/v2/{name}/manifests/{reference}"
BLOB = "/v2/{name}/blobs/{digest}"
UPLOAD = "/v2/{name}/blobs/uploads/{upload}"


def debug_config(port: int, **http: object) -> dict[str, object]:
    return {"http": {"debug": {"addr": f"127.0.0.1:{port}", "prometheus": {"enabled": True}}, **http}}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def scrape_when(port: int, ready: Callable[[dict], bool], timeout: float = 15) -> dict:
    """A scrape in which ``ready`` holds: a request is counted just after its answer went out."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_docker_push_and_pull_move_the_metrics(start_moorage, docker: Docker, images: ImageFactory) -> None:
    port = free_port()
    registry: RegistryProcess = start_moorage(debug_config(port))
    before = scrape(port)
    image = images.docker_archive("e2e/metrics:1", layers=[images.random_layer(2 << 20), images.layer()])
    docker.load(image.path)
    ref = registry.ref("team/metrics", "1")
    docker.tag(image.tag, ref)
    docker.push(ref)
    put = {"route": MANIFEST, "method": "PUT", "status": "201"}
    pushed = scrape_when(port, lambda s: total(s, "moorage_http_requests_total", **put)
                         > total(before, "moorage_http_requests_total", **put))
    docker.rmi(ref, image.tag)
    docker.pull(ref)
    gets = {"route": BLOB, "method": "GET", "status": "200"}
    uploaded = total(pushed, "moorage_http_requests_total", route=UPLOAD, method="PUT", status="201") - total(
        before, "moorage_http_requests_total", route=UPLOAD, method="PUT", status="201")
    pulled = scrape_when(port, lambda s: total(s, "moorage_http_requests_total", **gets)
                         - total(pushed, "moorage_http_requests_total", **gets) >= uploaded)

    def moved(name: str, after: dict, base: dict, **labels: str) -> float:
        return total(after, name, **labels) - total(base, name, **labels)

    assert moved("moorage_http_requests_total", pushed, before, route=MANIFEST, method="PUT", status="201") == 1
    blobs = moved("moorage_http_requests_total", pushed, before, route=UPLOAD, method="PUT", status="201")
    assert blobs >= 3  # the config and the layers
    assert moved("moorage_http_request_bytes_total", pushed, before, route=UPLOAD) >= 2 << 20
    assert moved("moorage_http_request_duration_seconds_count", pushed, before, route=MANIFEST, method="PUT") == 1
    assert moved("moorage_storage_operations_total", pushed, before, driver="filesystem", operation="commit") >= blobs
    assert moved("moorage_storage_operation_duration_seconds_count", pushed, before, operation="move") >= 1
    assert moved("moorage_http_requests_total", pulled, pushed, route=MANIFEST, method="GET", status="200") >= 1
    assert moved("moorage_http_requests_total", pulled, pushed, route=BLOB, method="GET", status="200") == blobs
    assert moved("moorage_http_response_bytes_total", pulled, pushed, route=BLOB, method="GET") >= 2 << 20
    assert moved("moorage_http_request_duration_seconds_bucket", pulled, pushed, route=BLOB, method="GET",
                 le="+Inf") == blobs
    assert total(pulled, "moorage_uploads_in_flight") == 0
    assert not any("team/metrics" in str(labels) for _, labels in pulled)


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_two_workers_share_their_metrics(start_moorage, server: str) -> None:
    port = free_port()
    registry = start_moorage(debug_config(port, workers=2, server=server))
    # the start-up check's GET /v2/ counted first
    before = scrape_when(port, lambda s: total(s, "moorage_http_request_duration_seconds_count", route="/v2/") >= 1)
    with registry.http(headers={"Connection": "close"}) as http:  # new connections: both workers answer
        for _ in range(200):
            assert http.get("/v2/").status_code == 200
            assert http.get("/v2/none/manifests/x").status_code == 404
    after = scrape_when(port, lambda s: total(s, "moorage_http_request_duration_seconds_count", route="/v2/")
                        - total(before, "moorage_http_request_duration_seconds_count", route="/v2/") >= 200)
    for name, labels in (("moorage_http_requests_total", {"route": "/v2/", "method": "GET", "status": "200"}),
                         ("moorage_http_requests_total", {"route": MANIFEST, "status": "404"}),
                         ("moorage_http_request_duration_seconds_count", {"route": "/v2/"})):
        assert total(after, name, **labels) - total(before, name, **labels) == 200, name
