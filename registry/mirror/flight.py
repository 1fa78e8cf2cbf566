"""Sharing one upstream fetch between the concurrent requests that need it (within a process).

``SingleFlight`` runs one task per key and lets every caller await it; a caller that goes away does
not cancel the work the others wait for.  ``BlobSpool`` is the local file a blob download is teed into
while it is being stored, so that every client waiting on it streams from the first bytes on.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
READ_BLOCK = 1 << 20


class SingleFlight:
    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def joined(self, key: Hashable) -> bool:
        return key in self._tasks

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SpoolFailed(Exception):
    """The download feeding a spool failed; readers must abort their response."""


class BlobSpool:
    """An append-only local file plus progress notifications; readers tail it as it grows."""

    def __init__(self, directory: str | None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="moorage-spool-", dir=directory)
        self._fd: int | None = fd
        self.size: int | None = None  # the blob's size, once the upstream told it
        self.written = 0
        self.error: BaseException | None = None
        self.finished = False
        self.started = asyncio.get_running_loop().create_future()  # resolves when the size is known
        self._progress = asyncio.Event()

    def start(self, size: int | None) -> None:
        self.size = size
        if not self.started.done():
            self.started.set_result(size)

    async def tee(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass ``chunks`` on, appending each to the spool first so that readers see it at once."""
        loop = asyncio.get_running_loop()
        async for chunk in chunks:
            assert self._fd is not None
            await loop.run_in_executor(None, write_all, self._fd, chunk)  # off the event loop's core
            self.written += len(chunk)
            self._notify()
            yield chunk

    def finish(self, error: BaseException | None = None) -> None:
        """The download ended: verified and stored (no error), or failed (readers abort)."""
        self.error = error
        self.finished = True
        if not self.started.done():
            if error is None:
                self.started.set_result(self.written)
            elif isinstance(error, Exception):
                self.started.set_exception(error)
                self.started.exception()  # retrieved here: nobody may be waiting
            else:
                self.started.cancel()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.unlink(self.path)  # readers hold their own descriptor
        self._notify()

    def _notify(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    def reader(self, offset: int, length: int | None) -> AsyncIterator[bytes]:
        """Bytes [offset, offset+length) as they arrive; opened now, so it survives ``finish``."""
        fd = os.open(self.path, os.O_RDONLY)
        return self._read(fd, offset, length)

    async def _read(self, fd: int, offset: int, length: int | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        position = offset
        try:
            while length is None or position < offset + length:
                available = self.written - position
                if available <= 0:
                    if self.error is not None:
                        raise SpoolFailed(str(self.error))
                    if self.finished:
                        return
                    await self._progress.wait()
                    continue
                want = min(READ_BLOCK, available)
                if length is not None:
                    want = min(want, offset + length - position)
                chunk = await loop.run_in_executor(None, os.pread, fd, want, position)
                if not chunk:
                    raise SpoolFailed("spool shorter than announced")
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
