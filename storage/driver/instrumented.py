"""A storage driver wrapper that counts and times every call of the driver interface.

One wrapper for every backend, instead of timing code in each driver: ``Services`` wraps the configured
driver in it when metrics are enabled. Driver-specific attributes (``request_counts`` of S3 ...) are passed
through. A missing path or a read beyond the end is the caller's business, not a storage error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from storage.driver.interface import FileInfo, FileWriter, InvalidOffset, KeyPage, PathNotFound, StorageDriver
from storage.metrics import driver_errors, driver_latency, driver_operations

T = TypeVar("T")
EXPECTED = (PathNotFound, InvalidOffset)


class Probe:
    """The metric children of one (driver, operation), resolved once."""

    __slots__ = ("count", "errors", "latency")

    def __init__(self, driver: str, operation: str) -> None:
        self.count = driver_operations.labels(driver, operation)
        self.errors = driver_errors.labels(driver, operation)
        self.latency = driver_latency.labels(driver, operation)

    async def time(self, call: Awaitable[T]) -> T:
        self.count.inc()
        started = time.perf_counter()
        try:
            return await call
        except EXPECTED:
            raise
        except Exception:
            self.errors.inc()
            raise
        finally:
            self.latency.observe(time.perf_counter() - started)


class InstrumentedDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self._probes: dict[str, Probe] = {}

    def probe(self, operation: str) -> Probe:
        found = self._probes.get(operation)
        if found is None:
            found = self._probes[operation] = Probe(self.name, operation)
        return found

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    async def get_content(self, path: str) -> bytes:
        return await self.probe("get_content").time(self.inner.get_content(path))

    async def put_content(self, path: str, content: bytes) -> None:
        await self.probe("put_content").time(self.inner.put_content(path, content))

    async def put_contents(self, items: Sequence[tuple[str, bytes]]) -> None:
        await self.probe("put_contents").time(self.inner.put_contents(items))

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        probe = self.probe("read")
        probe.count.inc()
        started = time.perf_counter()
        first = True
        try:
            async for chunk in self.inner.reader(path, offset, length):
                if first:
                    probe.latency.observe(time.perf_counter() - started)
                    first = False
                yield chunk
        except EXPECTED:
            raise
        except Exception:
            probe.errors.inc()
            raise

    async def writer(self, path: str, append: bool = False, resume: bytes | None = None) -> FileWriter:
        return InstrumentedWriter(await self.probe("writer").time(self.inner.writer(path, append, resume)), self)

    async def stat(self, path: str) -> FileInfo:
        return await self.probe("stat").time(self.inner.stat(path))

    async def stat_file(self, path: str) -> FileInfo:
        return await self.probe("stat_file").time(self.inner.stat_file(path))

    async def list(self, path: str) -> list[str]:
        return await self.probe("list").time(self.inner.list(path))

    async def move(self, source: str, dest: str, size: int | None = None) -> None:
        await self.probe("move").time(self.inner.move(source, dest, size))

    async def delete(self, path: str) -> None:
        await self.probe("delete").time(self.inner.delete(path))

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        self.probe("walk").count.inc()
        return self.inner.walk(path)

    async def list_nested(self, path: str, depth: int) -> list[str]:
        return await self.probe("list_nested").time(self.inner.list_nested(path, depth))

    async def list_keys(self, path: str, start_after: str = "", delimiter: str = "",
                        limit: int = 1000) -> KeyPage | None:
        return await self.probe("list_keys").time(self.inner.list_keys(path, start_after, delimiter, limit))

    async def delete_file(self, path: str) -> None:
        await self.probe("delete_file").time(self.inner.delete_file(path))

    async def delete_objects(self, groups: Sequence[tuple[str, Sequence[str] | None]]) -> None:
        await self.probe("delete_objects").time(self.inner.delete_objects(groups))

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self.probe("redirect_url").time(self.inner.redirect_url(path, method))

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    async def close(self) -> None:
        await self.inner.close()


class InstrumentedWriter(FileWriter):
    def __init__(self, inner: FileWriter, driver: InstrumentedDriver) -> None:
        self.inner = inner
        self.driver = driver

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def resume(self) -> bytes | None:
        return self.inner.resume

    def _timed(self, operation: str, call: Callable[[], Awaitable[None]]) -> Awaitable[None]:
        return self.driver.probe(operation).time(call())

    async def write(self, data: bytes | memoryview) -> None:
        await self._timed("write", lambda: self.inner.write(data))

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        await self._timed("write", lambda: self.inner.write_parts(parts))

    async def commit(self) -> None:
        await self._timed("commit", self.inner.commit)

    async def close(self) -> None:
        await self._timed("close", self.inner.close)

    async def cancel(self) -> None:
        await self._timed("cancel", self.inner.cancel)

    async def discard(self) -> None:
        await self._timed("discard", self.inner.discard)
