"""Notifications from a real `moorage serve` to a real HTTP receiver (uvicorn in a thread of the test):
Distribution's envelope field by field, a receiver outage with a Moorage restart in between, two
replicas sharing one queue."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .helpers import free_port
from .servers import RegistryProcess

EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Receiver:
    """A webhook receiver on a fixed port that can go down and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.envelopes: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    async def endpoint(self, request: Request) -> Response:
        self.envelopes.append((dict(request.headers), json.loads(await request.body())))
        return Response(status_code=200)

    def start(self) -> None:
        app = Starlette(routes=[Route("/events", self.endpoint, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server is not None and self.server.started, "the receiver to start")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.server = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for _, envelope in self.envelopes for event in envelope["events"]]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def notifying(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    endpoint = {"name": "hook", "url": receiver.url, "headers": {"Authorization": ["Bearer e2e-token"]},
                "timeout": "2s", "threshold": 3, "backoff": "100ms", "maxbackoff": "400ms", **extra}
    return {"notifications": {"endpoints": [endpoint], "poll": "200ms", "lease": "3s"}}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(http: httpx.Client, name: str, tag: str, layer: bytes) -> tuple[str, str, bytes, str]:
    """Config and layer blobs, then the manifest by tag; (layer digest, manifest digest, manifest, request id)."""
    config = b'{"architecture":"amd64","os":"linux"}'
    for blob in (config, layer):
        assert http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(blob)},
                         content=blob).status_code == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(layer),
                    "size": len(layer)}],
    }).encode()
    r = http.put(f"/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return digest_of(layer), r.headers["docker-content-digest"], manifest, r.headers["x-request-id"]


def check_common(event: dict[str, Any], registry: RegistryProcess, method: str) -> None:
    uuid.UUID(event["id"])
    stamp = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.UTC) - stamp).total_seconds()) < 300
    request = event["request"]
    assert set(request) == {"id", "addr", "host", "method", "useragent"}
    assert request["addr"] == "127.0.0.1" and request["host"] == registry.host and request["method"] == method
    assert request["useragent"] == "notifications-e2e/1"
    assert event["actor"] == {}  # no auth configured: Distribution leaves the actor empty
    assert set(event["source"]) == {"addr", "instanceID"} and event["source"]["addr"].endswith(f":{registry.port}")
    uuid.UUID(event["source"]["instanceID"])


def test_envelope_matches_distributions_format(start_moorage, receiver: Receiver) -> None:
    receiver.start()
    registry = start_moorage(notifying(receiver))
    with registry.http(headers={"User-Agent": "notifications-e2e/1"}) as http:
        layer = b"layer of the envelope test"
        layer_digest, manifest_digest, manifest, push_id = push_image(http, "team/app", "1.0", layer)
        pulled = http.get("/v2/team/app/manifests/1.0", headers={"Accept": OCI_MANIFEST})
        assert pulled.status_code == 200
        assert http.get(f"/v2/team/app/blobs/{layer_digest}").content == layer
        assert http.head(f"/v2/team/app/blobs/{layer_digest}").status_code == 200  # HEAD: no event
        mount = http.post("/v2/team/copy/blobs/uploads/", params={"mount": layer_digest, "from": "team/app"})
        assert mount.status_code == 201
        assert http.delete(f"/v2/team/app/manifests/{manifest_digest}").status_code == 202
    wait_for(lambda: len(receiver.events) >= 7, "7 events")
    time.sleep(0.5)
    headers = receiver.envelopes[0][0]
    assert headers["content-type"] == EVENTS_TYPE and headers["authorization"] == "Bearer e2e-token"
    events = receiver.events
    assert [(e["action"], e["target"].get("mediaType")) for e in events] == [
        ("push", "application/octet-stream"), ("push", "application/octet-stream"), ("push", OCI_MANIFEST),
        ("pull", OCI_MANIFEST), ("pull", "application/octet-stream"), ("mount", "application/octet-stream"),
        ("delete", None),
    ]
    methods = ["POST", "POST", "PUT", "GET", "GET", "POST", "DELETE"]
    for event, method in zip(events, methods, strict=True):
        check_common(event, registry, method)
    assert len({e["id"] for e in events}) == 7
    base = f"http://{registry.host}/v2"
    layer_push, manifest_push, manifest_pull, blob_pull, mounted, deleted = events[1:]
    assert layer_push["target"] == {"mediaType": "application/octet-stream", "digest": layer_digest,
                                    "size": len(layer), "length": len(layer), "repository": "team/app",
                                    "url": f"{base}/team/app/blobs/{layer_digest}"}
    assert manifest_push["target"] == {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
                                       "length": len(manifest), "repository": "team/app",
                                       "url": f"{base}/team/app/manifests/{manifest_digest}", "tag": "1.0"}
    assert manifest_push["request"]["id"] == push_id  # the X-Request-Id the client got
    assert manifest_pull["target"] == {**manifest_push["target"]}
    assert manifest_pull["request"]["id"] == pulled.headers["x-request-id"]
    assert blob_pull["target"] == layer_push["target"]
    assert mounted["target"] == {"mediaType": "application/octet-stream", "digest": layer_digest,
                                 "size": len(layer), "length": len(layer), "repository": "team/copy",
                                 "fromRepository": "team/app", "url": f"{base}/team/copy/blobs/{layer_digest}"}
    assert deleted["target"] == {"digest": manifest_digest, "repository": "team/app"}  # as Distribution's deletes


def test_ignored_actions_and_media_types(start_moorage, receiver: Receiver) -> None:
    receiver.start()
    registry = start_moorage(notifying(receiver, ignoredmediatypes=["application/octet-stream"],
                                       ignore={"actions": ["pull"]}))
    with registry.http(headers={"User-Agent": "notifications-e2e/1"}) as http:
        push_image(http, "team/ignored", "1", b"x")
        assert http.get("/v2/team/ignored/manifests/1", headers={"Accept": OCI_MANIFEST}).status_code == 200
    wait_for(lambda: len(receiver.events) >= 1, "the manifest push")
    time.sleep(1)
    assert [(e["action"], e["target"]["mediaType"]) for e in receiver.events] == [("push", OCI_MANIFEST)]


def queue_dir(registry: RegistryProcess) -> Path:
    return registry.root / "docker" / "registry" / "v2" / "_moorage" / "notifications" / "hook" / "events"


def pull_events(http: httpx.Client, name: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        r = http.get(f"/v2/{name}/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        ids.append(r.headers["x-request-id"])
    return ids


def test_receiver_down_for_100_events_and_a_restart_loses_none(start_moorage, receiver: Receiver) -> None:
    registry = start_moorage(notifying(receiver, ignore={"actions": ["push"]}))
    with registry.http(headers={"User-Agent": "notifications-e2e/1"}) as http:
        push_image(http, "team/outage", "1", b"outage layer")
        request_ids = pull_events(http, "team/outage", 60)
    registry.restart()  # SIGTERM, then a new process: the queued events are in storage
    with registry.http(headers={"User-Agent": "notifications-e2e/1"}) as http:
        request_ids += pull_events(http, "team/outage", 40)
    # all waiting in the durable queue while the receiver is down (the last ones are written just after
    # their answers went out)
    wait_for(lambda: len(list(queue_dir(registry).iterdir())) >= 100, "100 queued events", timeout=10)
    assert len(list(queue_dir(registry).iterdir())) == 100
    receiver.start()
    wait_for(lambda: len({e["id"] for e in receiver.events}) >= 100, "100 distinct events", timeout=120)
    time.sleep(1)
    events = receiver.events
    by_request: dict[str, set[str]] = {}
    for event in events:
        by_request.setdefault(event["request"]["id"], set()).add(event["id"])
    assert sorted(by_request) == sorted(request_ids)  # every one of the 100, nothing else
    assert all(len(ids) == 1 for ids in by_request.values())  # a repeat only ever under the same id
    print(f"outage test: {len(events)} events received for 100 requests, {len(set(e['id'] for e in events))} "
          f"distinct ids, {len(receiver.envelopes)} envelopes")
    wait_for(lambda: not any(queue_dir(registry).iterdir()),
             "the queue to empty")


def test_two_replicas_deliver_each_event_once(start_moorage, receiver: Receiver, tmp_path) -> None:
    receiver.start()
    shared = tmp_path / "shared"
    replicas = [start_moorage(notifying(receiver), root=shared) for _ in range(2)]
    request_ids = []
    with replicas[0].http(headers={"User-Agent": "notifications-e2e/1"}) as http:
        push_image(http, "team/replicas", "1", b"replicated layer")
    for replica in replicas:
        with replica.http(headers={"User-Agent": "notifications-e2e/1"}) as http:
            request_ids += pull_events(http, "team/replicas", 20)
    wait_for(lambda: {e["request"]["id"] for e in receiver.events} >= set(request_ids), "40 pull events")
    time.sleep(1.5)
    pulls = [e for e in receiver.events if e["action"] == "pull"]
    assert len({e["id"] for e in pulls}) == 40 and {e["request"]["id"] for e in pulls} == set(request_ids)
    # one replica at a time delivers: a repeat needs a replica stalled longer than the lease's settle time
    # while taking it, and then is one batch at most, under the same ids
    assert len(pulls) - 40 <= 10, f"{len(pulls) - 40} events delivered twice"
    sources = {e["source"]["instanceID"] for e in pulls}
    assert len(sources) == 2  # events of both replicas, delivered by whichever held the lease
