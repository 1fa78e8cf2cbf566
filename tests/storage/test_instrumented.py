"""The metrics wrapper is a driver like any other: it implements the whole interface itself, so a method
added to the interface cannot slip past it (``__getattr__`` would forward it untimed, or the wrapper
would not instantiate at all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.driver import StorageDriver
from storage.driver.filesystem import FilesystemDriver
from storage.driver.instrumented import InstrumentedDriver
from storage.metrics import driver_operations

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("method", sorted(StorageDriver.__abstractmethods__))
def test_every_interface_method_is_wrapped(method: str) -> None:
    assert method in vars(InstrumentedDriver), f"InstrumentedDriver does not wrap {method}"


async def test_calls_reach_the_driver_and_are_counted(tmp_path: Path) -> None:
    driver = InstrumentedDriver(FilesystemDriver(str(tmp_path), fsync=False))
    before = driver_operations.labels("filesystem", "put_contents")._value.get()
    await driver.put_contents([("/a/link", b"1"), ("/b/link", b"2")])
    assert [await driver.get_content(p) for p in ("/a/link", "/b/link")] == [b"1", b"2"]
    assert driver_operations.labels("filesystem", "put_contents")._value.get() == before + 1
    await driver.close()
