"""The storage driver interface every backend implements: the contract only.

Paths are absolute, '/'-separated keys below the driver's root (e.g. ``/docker/registry/v2/blobs/...``);
drivers never see anything above their root.  The interface mirrors Distribution's
``storagedriver.StorageDriver`` so that the same layout code works on every backend.  What every driver
does the same way (path validation, the generic walk) lives in ``storage.driver.base``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


class StorageError(Exception):
    """A backend failure that is not the caller's fault."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached, timed out or keeps failing: the request may succeed later.

    ``retry_after`` is how many seconds a client had better wait (the registry's 503 says so);
    ``reason``, when set, is what the client may be told (it names the bucket or endpoint, no keys)."""

    def __init__(self, message: str, retry_after: float = 5.0, reason: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


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


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of an ordered key listing (``StorageDriver.list_keys``).

    ``names`` are relative to the listed directory, in byte order; a name that ends with the delimiter
    stands for every key that continues it.  ``next_start`` is where the following page starts: past the
    last name and everything it stands for.
    """

    names: list[str]
    truncated: bool
    next_start: str


class FileWriter(abc.ABC):
    """A streaming writer; bytes become visible at ``path`` only after ``commit``/``close``."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the object so far, including what an append started with."""

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview) -> None:
        """Append data (callers pass large batches: several MiB)."""

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        """Append the pieces of one batch, as ``write`` of their concatenation would (the filesystem writes
        them with one gathered write, without joining them first)."""
        await self.write(b"".join(parts))

    @abc.abstractmethod
    async def commit(self) -> None:
        """Flush and make durable everything written; the writer may not be used afterwards."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Persist what was written so far so that ``writer(path, append=True)`` can continue it.

        An append session's bytes may stay invisible at ``path`` until ``commit`` (S3 keeps them in an
        open multipart upload)."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Discard the object."""

    @abc.abstractmethod
    async def discard(self) -> None:
        """Undo this writer: the object stays as it was when the writer was opened (a refused request
        must change nothing); the writer may not be used afterwards."""

    @property
    def resume(self) -> bytes | None:
        """After ``close`` of an append writer: what ``writer(path, append=True, resume=...)`` needs to go
        on without looking in storage for it (S3: the open multipart upload, its parts, its tail); the
        caller keeps it with its own state.  None where the backend needs nothing (the filesystem)."""
        return None


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
    async def put_contents(self, items: Sequence[tuple[str, bytes]]) -> None:
        """``put_content`` for a few small objects that belong together (a manifest and its link, a tag's
        two links): each is replaced atomically, only after all of them are complete and durable, and they
        appear in the order given.  The filesystem writes them in one thread hop and one journal commit
        instead of one of each per file."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when None) from ``offset``. Raises PathNotFound / InvalidOffset."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False, resume: bytes | None = None) -> FileWriter:
        """A writer for a new object, or continuing an existing one when ``append``: ``resume`` is the
        previous writer's ``resume`` (b"" for a session that holds nothing yet; None: the driver finds out)."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Size and kind of an object or directory prefix. Raises PathNotFound."""

    @abc.abstractmethod
    async def stat_file(self, path: str) -> FileInfo:
        """Size and age of an object; raises PathNotFound when there is none (a directory is none).

        Cheaper than ``stat`` where that must also look for a directory (S3: one request, not two)."""

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sorted. Raises PathNotFound."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str, size: int | None = None) -> None:
        """Move an object, replacing ``dest`` atomically. Raises PathNotFound.  ``size``: the object's size
        when the caller knows it (S3 need not ask)."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete an object or a whole directory tree. Raises PathNotFound."""

    @abc.abstractmethod
    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file and directory below ``path``, depth first, children in sorted order.

        Raises PathNotFound when ``path`` does not exist; entries removed while the walk runs are left out.
        """

    @abc.abstractmethod
    async def list_nested(self, path: str, depth: int) -> list[str]:
        """Relative paths (``a/b`` for depth 2) of the entries ``depth`` levels below ``path``, sorted
        component by component (as a walk visits them).

        Files above that depth are left out.  Raises PathNotFound when ``path`` does not exist.  Drivers
        with a flat key space answer in one listing (S3: a request per 1,000 keys, not per directory).
        """

    @abc.abstractmethod
    async def list_keys(self, path: str, start_after: str = "", delimiter: str = "",
                        limit: int = 1000) -> KeyPage | None:
        """One page of up to ``limit`` keys below ``path`` (relative names) after ``start_after``, in byte
        order, grouped at ``delimiter`` as S3's ListObjectsV2 does (an empty page when there are none).

        None where the backend keeps no key order (the filesystem): callers then list directory by
        directory.
        """

    @abc.abstractmethod
    async def delete_file(self, path: str) -> None:
        """Delete one object if it is there; no error when it is not.  Never given a directory.

        Cheaper than ``delete`` where that must first find out what ``path`` is (S3: one request).
        """

    @abc.abstractmethod
    async def delete_objects(self, groups: Sequence[tuple[str, Sequence[str] | None]]) -> None:
        """Delete many objects, missing ones being no error: for each ``(directory, files)`` the files
        named (everything below ``directory`` when None).  Where objects live in directories (the
        filesystem) each directory goes with all it holds, as Distribution removes a blob's directory;
        S3 deletes the files in DeleteObjects requests of up to 1,000 keys."""

    @abc.abstractmethod
    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch the object from directly, or None to stream it through us."""

    @abc.abstractmethod
    def local_path(self, path: str) -> str | None:
        """The object's file on local disk, for zero-copy responses; None where there is none."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and thread pools."""
