"""An S3 endpoint that refuses, hangs or fails: a prompt 503 UNAVAILABLE with Retry-After, a breaker that
fails fast while it stays down, and recovery by itself when it returns (issue 14, defect 2)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from bench.s3 import S3Backend
from registry.config import parse
from registry.http.app import create_app
from storage.driver import StorageUnavailable
from storage.driver.s3 import S3Driver
from tests.faultproxy import FaultProxy

FAST = {"connecttimeout": 0.5, "readtimeout": 1, "maxattempts": 1, "breakerthreshold": 2, "breakercooldown": 1}
# a failure within the timeouts plus slack for a busy CI machine (seen: 2.9 s); without them: minutes
BOUND = FAST["connecttimeout"] + FAST["readtimeout"] + 3


@pytest.fixture
def proxy(moto_server: S3Backend) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_server.endpoint, delay=0.2)
    yield proxy
    proxy.stop()


@pytest.fixture
def driver(moto_server: S3Backend, moto_bucket: str, proxy: FaultProxy) -> Iterator[S3Driver]:
    params = {**moto_server.parameters(moto_bucket, rootdirectory=f"/outage/{time.time_ns()}"), **FAST,
              "regionendpoint": proxy.endpoint}
    driver = S3Driver.from_parameters(params)
    yield driver
    asyncio.run(driver.close())


async def timed_failure(driver: S3Driver) -> float:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as failure:
        await driver.get_content("/some/object")
    assert failure.value.retry_after > 0
    return time.monotonic() - started


@pytest.mark.parametrize("mode", ["refuse", "hang", "500", "503"])
def test_failing_endpoint_is_unavailable_then_fails_fast_then_recovers(
    driver: S3Driver, proxy: FaultProxy, mode: str
) -> None:
    async def scenario() -> None:
        await driver.put_content("/some/object", b"content")
        proxy.set(mode)
        for _ in range(FAST["breakerthreshold"]):
            assert await timed_failure(driver) < BOUND
        assert driver.breaker.is_open
        assert await timed_failure(driver) < 0.1  # open: refused without waiting for the endpoint
        proxy.set("pass")
        await asyncio.sleep(FAST["breakercooldown"] + 0.1)
        assert await driver.get_content("/some/object") == b"content"
        assert not driver.breaker.is_open

    asyncio.run(scenario())


def test_slow_endpoint_within_the_timeouts_still_works(driver: S3Driver, proxy: FaultProxy) -> None:
    async def scenario() -> None:
        await driver.put_content("/slow/object", b"slow but fine")
        proxy.set("slow")
        assert await driver.get_content("/slow/object") == b"slow but fine"

    asyncio.run(scenario())


def test_registry_answers_503_unavailable_with_retry_after(
    moto_server: S3Backend, moto_bucket: str, proxy: FaultProxy
) -> None:
    params = {**moto_server.parameters(moto_bucket, rootdirectory=f"/outage-api/{time.time_ns()}"), **FAST,
              "regionendpoint": proxy.endpoint}
    config = parse({"storage": {"s3": params, "redirect": {"disable": True}}})
    with TestClient(create_app(config), base_url="http://registry.test") as client:
        assert client.get("/v2/team/app/tags/list").status_code == 404
        proxy.set("hang")
        for path in ("/v2/team/app/tags/list", "/v2/team/app/manifests/latest",
                     "/v2/team/app/blobs/sha256:" + "a" * 64, "/v2/_catalog"):
            started = time.monotonic()
            r = client.get(path)
            assert time.monotonic() - started < BOUND
            assert r.status_code == 503, r.text
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert int(r.headers["Retry-After"]) >= 1
        r = client.post("/v2/team/app/blobs/uploads/")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        proxy.set("pass")
        time.sleep(FAST["breakercooldown"] + 0.1)
        assert client.get("/v2/team/app/tags/list").status_code == 404
        assert client.post("/v2/team/app/blobs/uploads/").status_code == 202
