"""Blob upload sessions whose whole state lives in storage.

An upload is ``_uploads/<id>/data`` plus ``startedat`` and, after every request, the serialized hash
state at the data's length.  Any process can continue an upload: when the saved hash state does not
match the data (a crash mid-request), the data is hashed again from storage.  A blob is moved under
its digest only after the digest of the received bytes was verified.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from storage import paths
from storage.blobs import BlobStore
from storage.digests import HASHERS, Digest, Hasher, new_hasher, restore_hasher
from storage.driver import FileWriter, PathNotFound, StorageDriver

BATCH_SIZE = 4 << 20
UPLOAD_ID_LENGTH = 36


class UploadUnknown(Exception):
    """No such upload session."""


class OffsetMismatch(Exception):
    """A chunk did not start where the upload ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upload is at offset {size}")
        self.size = size


class DigestMismatch(Exception):
    """The received bytes do not hash to the digest the client named."""


class SizeMismatch(Exception):
    """Fewer or more bytes arrived than the client declared."""


@dataclass(slots=True)
class UploadInfo:
    name: str
    id: str
    size: int
    started_at: float
    algorithm: str


class UploadStore:
    def __init__(self, driver: StorageDriver, blobs: BlobStore, hash_threads: int = 4) -> None:
        self.driver = driver
        self.blobs = blobs
        self._pool = ThreadPoolExecutor(max_workers=hash_threads, thread_name_prefix="hash")
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def create(self, name: str, algorithm: str = "sha256") -> UploadInfo:
        upload_id = str(uuid.uuid4())
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.driver.put_content(paths.upload_started_at(name, upload_id), stamp.encode())
        hasher = new_hasher(algorithm)
        await self._save_state(name, upload_id, algorithm, 0, hasher)
        return UploadInfo(name, upload_id, 0, now, algorithm)

    async def info(self, name: str, upload_id: str) -> UploadInfo:
        if len(upload_id) != UPLOAD_ID_LENGTH or not all(c in "0123456789abcdef-" for c in upload_id):
            raise UploadUnknown(upload_id)
        try:
            started = await self.driver.stat(paths.upload_started_at(name, upload_id))
        except PathNotFound:
            raise UploadUnknown(upload_id) from None
        try:
            size = (await self.driver.stat(paths.upload_data(name, upload_id))).size
        except PathNotFound:
            size = 0
        return UploadInfo(name, upload_id, size, started.modified, await self._algorithm(name, upload_id))

    def lock(self, name: str, upload_id: str) -> asyncio.Lock:
        """Serialize requests on one upload within this process (clients send one at a time)."""
        key = (name, upload_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def release_lock(self, name: str, upload_id: str) -> None:
        lock = self._locks.get((name, upload_id))
        if lock is not None and not lock.locked():
            del self._locks[(name, upload_id)]

    async def append(
        self,
        upload: UploadInfo,
        chunks: AsyncIterator[bytes],
        start: int | None = None,
        expected_length: int | None = None,
    ) -> int:
        """Append a streamed chunk; returns the new size. ``start`` must equal the current size."""
        if start is not None and start != upload.size:
            raise OffsetMismatch(upload.size)
        writer = await self.driver.writer(paths.upload_data(upload.name, upload.id), append=True)
        upload.size = writer.size
        if start is not None and start != writer.size:
            await writer.close()
            raise OffsetMismatch(writer.size)
        hasher = await self._hasher(upload)
        received = 0
        try:
            received = await self._pump(chunks, writer, hasher)
        finally:
            await writer.close()
        upload.size += received
        if expected_length is not None and received != expected_length:
            raise SizeMismatch(f"declared {expected_length} bytes, received {received}")
        await self._save_state(upload.name, upload.id, upload.algorithm, upload.size, hasher)
        return upload.size

    async def commit(self, upload: UploadInfo, digest: Digest, chunks: AsyncIterator[bytes] | None) -> int:
        """Append the final chunk, verify the digest, publish the blob; returns its size."""
        data_path = paths.upload_data(upload.name, upload.id)
        writer = await self.driver.writer(data_path, append=True)
        upload.size = writer.size
        try:
            hasher = await self._hasher(upload, digest.algorithm)
            if chunks is not None:
                upload.size += await self._pump(chunks, writer, hasher)
            await writer.commit()
        except BaseException:
            await writer.close()
            raise
        actual = await self._run(hasher.finalize)
        if actual != digest.hex:
            # keep the session as it was so that the client can retry with the right digest
            await self._save_state(upload.name, upload.id, digest.algorithm, upload.size, None)
            raise DigestMismatch(f"computed {digest.algorithm}:{actual}")
        if await self.blobs.exists(digest):
            await self.driver.delete(data_path)
        else:
            await self.driver.move(data_path, paths.blob_data(digest))
        await self.blobs.link(upload.name, digest)
        await self.cancel(upload.name, upload.id)
        return upload.size

    async def cancel(self, name: str, upload_id: str) -> None:
        try:
            await self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFound:
            raise UploadUnknown(upload_id) from None
        finally:
            self.release_lock(name, upload_id)

    async def _pump(self, chunks: AsyncIterator[bytes], writer: FileWriter, hasher: Hasher) -> int:
        """Receive into ~4 MiB batches; hash and write each while the next one is received."""
        pending: asyncio.Future[object] | None = None
        parts: list[bytes] = []
        buffered = total = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= BATCH_SIZE:
                    batch = b"".join(parts)
                    parts.clear()
                    total += buffered
                    buffered = 0
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(self._store(batch, writer, hasher))
            if pending is not None:
                await pending
                pending = None
            if parts:
                total += buffered
                await self._store(b"".join(parts), writer, hasher)
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
        return total

    async def _store(self, batch: bytes, writer: FileWriter, hasher: Hasher) -> None:
        await asyncio.gather(self._run(hasher.update, batch), writer.write(batch))

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _hasher(self, upload: UploadInfo, algorithm: str | None = None) -> Hasher:
        """The hash of the data so far: the saved state, or a re-hash of the stored data."""
        algorithm = algorithm or upload.algorithm
        state_path = paths.upload_hashstate(upload.name, upload.id, algorithm, upload.size)
        try:
            return restore_hasher(algorithm, await self.driver.get_content(state_path))
        except (PathNotFound, ValueError):
            pass
        hasher = new_hasher(algorithm)
        if upload.size:
            async for chunk in self.driver.reader(paths.upload_data(upload.name, upload.id), 0, upload.size):
                await self._run(hasher.update, chunk)
        return hasher

    async def _save_state(
        self, name: str, upload_id: str, algorithm: str, size: int, hasher: Hasher | None
    ) -> None:
        """Keep only the hash state at ``size`` (none when ``hasher`` is None)."""
        directory = paths.upload_hashstates_dir(name, upload_id, algorithm)
        if hasher is not None:
            await self.driver.put_content(f"{directory}/{size}", hasher.serialize())
        try:
            stale = [n for n in await self.driver.list(directory) if n != str(size) or hasher is None]
        except PathNotFound:
            stale = []
        for entry in stale:
            try:
                await self.driver.delete(f"{directory}/{entry}")
            except PathNotFound:
                pass

    async def _algorithm(self, name: str, upload_id: str) -> str:
        try:
            entries = await self.driver.list(f"{paths.upload_dir(name, upload_id)}/hashstates")
        except PathNotFound:
            return "sha256"
        for entry in entries:
            algorithm = entry.removesuffix(paths.HASHSTATE_SUFFIX)
            if entry.endswith(paths.HASHSTATE_SUFFIX) and algorithm in HASHERS:
                return algorithm
        return "sha256"

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
