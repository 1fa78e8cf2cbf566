"""The notification queue has a bound on disk (issue 24, item 13): while the receiver fails, events beyond
``maxevents`` are dropped oldest first, counted and logged, and the backlog is a metric."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from registry.events.notifications.queue import EventQueue
from storage import paths
from storage.driver.filesystem import FilesystemDriver

from .conftest import make_client, push_blob

REFUSING = "http://127.0.0.1:9/events"  # the discard port: nothing listens, every delivery fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def metric(name: str, endpoint: str) -> float:
    return REGISTRY.get_sample_value(name, {"endpoint": endpoint}) or 0.0


def event(n: int) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "action": "pull", "target": {"n": n}}


@pytest.mark.anyio
async def test_queue_keeps_the_newest_events_up_to_its_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    queue = EventQueue(driver, "bounded", lease=30, limit=100)
    dropped_before = metric("moorage_notification_events_dropped_total", "bounded")
    caplog.set_level(logging.WARNING, "moorage.notifications")
    for n in range(250):
        await queue.put(event(n))
    names = await queue.pending()
    assert len(names) == 100
    kept = [json.loads(await driver.get_content(f"{queue.events_dir}/{name}"))["target"]["n"] for name in names]
    assert kept == list(range(150, 250))  # the oldest went
    assert metric("moorage_notification_events_dropped_total", "bounded") - dropped_before == 150
    assert metric("moorage_notification_events_pending", "bounded") == 100
    assert "queue full" in caplog.text and "limit 100" in caplog.text
    await driver.close()


@pytest.mark.anyio
async def test_large_limit_is_checked_every_hundredth_of_it(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    queue = EventQueue(driver, "coarse", lease=30, limit=1000)
    for n in range(1200):
        await queue.put(event(n))
    assert 1000 <= len(await queue.pending()) < 1000 + queue.check_every == 1010
    await driver.close()


def test_registry_bounds_the_queue_while_the_receiver_is_down(tmp_path: Path) -> None:
    hooks = {"endpoints": [{"name": "down", "url": REFUSING, "maxevents": 40, "threshold": 1, "backoff": "1s"}]}
    with make_client(tmp_path / "root", notifications=hooks) as client:
        digest = push_blob(client, "team/app", b"layer")
        for _ in range(150):  # each pull queues an event
            assert client.get(f"/v2/team/app/blobs/{digest}").status_code == 200
        events_dir = Path(tmp_path / "root" / paths.notification_events("down").lstrip("/"))
        deadline = time.monotonic() + 10
        while len(list(events_dir.iterdir())) > 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(events_dir.iterdir())) <= 40
        assert metric("moorage_notification_events_dropped_total", "down") >= 150 + 1 - 40
