"""The storage driver interface every backend implements.

Paths are absolute, '/'-separated keys below the driver's root (e.g. ``/docker/registry/v2/blobs/...``);
drivers never see anything above their root.  The interface mirrors Distribution's
``storagedriver.StorageDriver`` so that the same layout code works on every backend.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass


class StorageError(Exception):
    """A backend failure that is not the caller's fault."""


class PathNotFound(StorageError):
    """The path does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidOffset(StorageError):
    """A read or append started beyond the end of the object."""

    def __init__(self, path: str, offset: int) -> None:
        super().__init__(f"invalid offset {offset} for {path}")
        self.path = path
        self.offset = offset


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float
    is_dir: bool


class FileWriter(abc.ABC):
    """A streaming writer; bytes become visible at ``path`` only after ``commit``/``close``."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the object so far, including what an append started with."""

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview) -> None:
        """Append data (callers pass large batches: several MiB)."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Flush and make durable everything written; the writer may not be used afterwards."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Persist what was written so far so that ``writer(path, append=True)`` can continue it."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Discard the object."""


class StorageDriver(abc.ABC):
    """Async blob/key storage; implementations must be safe for concurrent use."""

    name: str = "abstract"

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes:
        """Whole small object (links, manifests). Raises PathNotFound."""

    @abc.abstractmethod
    async def put_content(self, path: str, content: bytes) -> None:
        """Atomically replace the object: readers see the old or the new content, never a mix."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when None) from ``offset``. Raises PathNotFound / InvalidOffset."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer for a new object, or continuing an existing one when ``append``."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Size and kind of an object or directory prefix. Raises PathNotFound."""

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sorted. Raises PathNotFound."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str) -> None:
        """Move an object, replacing ``dest`` atomically. Raises PathNotFound."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete an object or a whole directory tree. Raises PathNotFound."""

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file and directory below ``path``, depth first, children in sorted order."""
        for name in await self.list(path):
            child = f"{path.rstrip('/')}/{name}"
            info = await self.stat(child)
            yield info
            if info.is_dir:
                async for sub in self.walk(child):
                    yield sub

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch the object from directly, or None to stream it through us."""
        return None

    def local_path(self, path: str) -> str | None:
        """The object's file on local disk, for zero-copy responses; None where there is none."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and thread pools."""
