"""Fixtures for the driver suite: every test runs on each backend (filesystem, S3 on moto, and S3 on a
real Ceph radosgw when selected with ``pytest -m radosgw``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.s3 import S3Backend, ServerUnavailable, start_moto
from storage.driver import StorageDriver
from storage.driver.filesystem import FilesystemDriver
from storage.driver.s3 import S3Driver
from tests.storage.servers import MOTO_PORTS, shared_radosgw

MiB = 1 << 20
# small sizes so that the suite exercises multipart writes and copies with little data
S3_TEST_PARAMETERS = {
    "chunksize": 5 * MiB,
    "multipartcopychunksize": 5 * MiB,
    "multipartcopythresholdsize": 8 * MiB,
    "maxthreads": 16,
}
S3_BACKENDS = ["s3", pytest.param("radosgw", marks=pytest.mark.radosgw)]
BACKENDS = ["filesystem", *S3_BACKENDS]

DriverFactory = Callable[..., StorageDriver]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The radosgw suite runs only when asked for (``-m radosgw``): deselect it otherwise."""
    if "radosgw" in (config.getoption("markexpr") or ""):
        return
    chosen = [item for item in items if item.get_closest_marker("radosgw") is None]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    server = start_moto(tmp_path_factory.mktemp("moto"), MOTO_PORTS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def radosgw_server(tmp_path_factory: pytest.TempPathFactory) -> S3Backend:
    """Ceph radosgw, only when the radosgw suite was selected; in CI a missing radosgw is a failure."""
    try:
        server = shared_radosgw(lambda: tmp_path_factory.mktemp("radosgw"))
    except ServerUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"radosgw suite selected in CI but radosgw is unavailable: {e}")
        pytest.skip(f"RADOSGW UNAVAILABLE, radosgw suite NOT RUN: {e}")
    print(f"\nradosgw started in {server.started_in:.1f}s at {server.endpoint}")
    return server


@pytest.fixture(scope="session")
def moto_bucket(moto_server: S3Backend) -> str:
    return moto_server.make_bucket()


@pytest.fixture(scope="session")
def radosgw_bucket(radosgw_server: S3Backend) -> str:
    return radosgw_server.make_bucket()


def s3_target(request: pytest.FixtureRequest, backend: str) -> tuple[S3Backend, str]:
    kind = "moto" if backend == "s3" else "radosgw"
    return request.getfixturevalue(f"{kind}_server"), request.getfixturevalue(f"{kind}_bucket")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_driver(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[DriverFactory]:
    """Builds independent driver instances on one fresh storage root (as separate processes would)."""
    created: list[StorageDriver] = []
    if backend == "filesystem":
        def factory(**_: object) -> StorageDriver:
            return FilesystemDriver(str(tmp_path / "root"), fsync=False)
    else:
        server, bucket = s3_target(request, backend)
        params = server.parameters(bucket, rootdirectory=f"/suite/{uuid.uuid4().hex}", **S3_TEST_PARAMETERS)

        def factory(**overrides: object) -> StorageDriver:
            return S3Driver.from_parameters({**params, **overrides})

    def make(**overrides: object) -> StorageDriver:
        driver = factory(**overrides)
        created.append(driver)
        return driver

    yield make
    for driver in created:
        asyncio.run(driver.close())


@pytest.fixture
def driver(make_driver: DriverFactory) -> StorageDriver:
    return make_driver()
