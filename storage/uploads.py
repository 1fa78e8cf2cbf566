"""Blob upload sessions whose whole state lives in storage.

An upload is ``_uploads/<id>/data`` plus ``startedat`` and, after every request, the serialized hash
state at the data's length (``hashstates/<alg>-moorage/<offset>``), together with what the driver needs to
continue the data (``FileWriter.resume``: S3's open multipart upload).  Any process can continue an
upload: when no saved hash state matches the data's length (a crash mid-request), the data is hashed
again from storage.  A blob is moved under its digest only after the digest of the received bytes was
verified.

Each request reads the session with one listing of its directory (on S3; on local disk two stats and a
listing of ``hashstates`` cost less): whether it exists, the data's length, the algorithm and the saved
states.  A new sha256 session saves no state (the state at offset 0 is the empty hash); one of another
algorithm saves its state at 0, which names the algorithm.  On local disk saving a state deletes the
states the session was read with by name; in a bucket up to ``STATES_KEPT`` earlier states stay and are
deleted together (a request less per chunk).  Finishing removes the session's directory, and on S3
the multipart uploads of requests that died with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from storage import paths
from storage.blobs import BlobStore, BlobUnknown
from storage.digests import HASHERS, Digest, Hasher, OneShotHasher, ResumableHasher, new_hasher, restore_hasher
from storage.driver import FileWriter, PathNotFound, StorageDriver

BATCH_SIZE = 4 << 20
UPLOAD_ID_LENGTH = 36
STATE_MAGIC = b"moorage-state-1\n"  # then the hash state's length (4 bytes), the state, the driver's token
# Blobs up to this size are published again over one that exists: as cheap as asking whether it does
# (S3: one request either way) and the content is the same, verified.  Larger ones are asked about.
ASK_ABOVE = 32 << 20
STATES_KEPT = 8  # earlier hash states a session in a bucket keeps before they are deleted together


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


DEFAULT_ALGORITHM = "sha256"


@dataclass(slots=True)
class UploadInfo:
    name: str
    id: str
    size: int
    started_at: float
    algorithm: str
    # the saved hash states as (algorithm, offset) when the session was read; None when unknown
    states: frozenset[tuple[str, int]] | None = None
    data_stored: bool = False  # ``data`` was an object when the session was read


class UploadStore:
    def __init__(self, driver: StorageDriver, blobs: BlobStore, hash_threads: int = 4) -> None:
        self.driver = driver
        self.blobs = blobs
        self._pool = ThreadPoolExecutor(max_workers=hash_threads, thread_name_prefix="hash")
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # objects that are local files: a stat costs microseconds, not a request
        self._local = driver.local_path(paths.ROOT) is not None

    async def create(self, name: str, algorithm: str = DEFAULT_ALGORITHM) -> UploadInfo:
        upload_id = str(uuid.uuid4())
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        upload = UploadInfo(name, upload_id, 0, now, algorithm, frozenset())
        # the state first: a session is there once ``startedat`` is, and then it has its algorithm
        await self._save_state(upload, algorithm, new_hasher(algorithm))
        await self.driver.put_content(paths.upload_started_at(name, upload_id), stamp.encode())
        return upload

    async def info(self, name: str, upload_id: str) -> UploadInfo:
        if len(upload_id) != UPLOAD_ID_LENGTH or not all(c in "0123456789abcdef-" for c in upload_id):
            raise UploadUnknown(upload_id)
        if self._local:
            return await self._info_by_stat(name, upload_id)
        base = paths.upload_dir(name, upload_id)
        try:
            entries = {entry.path[len(base) + 1 :]: entry async for entry in self.driver.walk(base)}
        except PathNotFound:
            raise UploadUnknown(upload_id) from None
        started = entries.get(paths.UPLOAD_STARTED_AT)
        if started is None or started.is_dir:
            raise UploadUnknown(upload_id)
        data = entries.get(paths.UPLOAD_DATA)
        states = frozenset(state for path, entry in entries.items()
                           if not entry.is_dir and (state := _parse_state(path)) is not None)
        stored = data is not None and not data.is_dir
        # an open session's bytes are not an object yet (S3 multipart): the newest state tells its length
        size = max([data.size if stored else 0, *(o for _, o in states)])  # type: ignore[union-attr]
        return UploadInfo(name, upload_id, size, started.modified, _algorithm(states, size), states,
                          data_stored=stored)

    async def _info_by_stat(self, name: str, upload_id: str) -> UploadInfo:
        """Local files: two stats and a listing of ``hashstates`` cost less than walking the session."""
        try:
            started = await self.driver.stat(paths.upload_started_at(name, upload_id))
        except PathNotFound:
            raise UploadUnknown(upload_id) from None
        try:
            size = (await self.driver.stat(paths.upload_data(name, upload_id))).size
        except PathNotFound:
            size = 0
        try:
            names = await self.driver.list(paths.upload_hashstates_root(name, upload_id))
        except PathNotFound:
            names = []
        algorithm = next(filter(None, map(_state_algorithm, names)), DEFAULT_ALGORITHM)
        # the states themselves are left unknown: looked up by name when needed
        return UploadInfo(name, upload_id, size, started.modified, algorithm)

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
        hasher, resume = await self._hasher(upload)
        writer = await self.driver.writer(paths.upload_data(upload.name, upload.id), append=True, resume=resume)
        if writer.size != upload.size:  # someone else wrote meanwhile: go by what the data holds
            self._observe(upload, writer.size)
            hasher, _ = await self._hasher(upload)
        if start is not None and start != writer.size:
            await writer.close()
            raise OffsetMismatch(writer.size)
        if expected_length is not None:
            chunks = _at_most(chunks, expected_length)
        try:
            received = await self._pump(chunks, writer, hasher)
            if expected_length is not None and received != expected_length:
                raise SizeMismatch(f"declared {expected_length} bytes, received {received}")
        except SizeMismatch:
            await writer.discard()  # a refused chunk changes nothing
            raise
        except BaseException:
            await writer.close()  # a broken connection keeps what arrived: the client may resume
            raise
        await writer.close()
        upload.size += received
        await self._save_state(upload, upload.algorithm, hasher, writer.resume)
        return upload.size

    async def commit(self, upload: UploadInfo, digest: Digest, chunks: AsyncIterator[bytes] | None) -> int:
        """Append the final chunk, verify the digest, publish the blob and link it into the repository;
        returns its size."""
        size = await self.finish(upload, digest, chunks)
        await self.blobs.link(upload.name, digest)
        return size

    async def finish(self, upload: UploadInfo, digest: Digest, chunks: AsyncIterator[bytes] | None) -> int:
        """``commit`` but for the link: the blob is stored under its digest and the session is gone (the
        write path links it once its quota allows)."""
        data_path = paths.upload_data(upload.name, upload.id)
        # all of the data in this request: no state to save, so hashlib's hasher, which frees the loop
        hasher: Hasher
        resumable: ResumableHasher | None = None
        if upload.size == 0 and chunks is not None:
            hasher, resume = OneShotHasher(digest.algorithm), self._fresh(upload)
        else:
            resumable, resume = await self._hasher(upload, digest.algorithm)
            hasher = resumable
        writer = await self.driver.writer(data_path, append=True, resume=resume)
        if writer.size != upload.size:  # someone else wrote meanwhile: go by what the data holds
            self._observe(upload, writer.size)
            resumable, _ = await self._hasher(upload, digest.algorithm)
            hasher = resumable
        try:
            if chunks is not None:
                upload.size += await self._pump(chunks, writer, hasher)
            await writer.commit()  # also makes the bytes of earlier requests durable (filesystem)
        except BaseException:
            await writer.close()
            raise
        if upload.size == 0:
            # an empty blob: a writer that wrote nothing need not have created the object (S3)
            await self.driver.put_content(data_path, b"")
        actual = await self._run(hasher.finalize)
        if actual != digest.hex:
            # keep the session resumable: the client may retry with the right digest (after a one-shot
            # hash, the retry hashes the stored data again)
            if resumable is not None:
                await self._save_state(upload, digest.algorithm, resumable, writer.resume)
            raise DigestMismatch(f"computed {digest.algorithm}:{actual}")
        await self._publish(upload, digest)
        await self.blobs.relied_on(upload.name, digest)  # a GC running now spares it (docs/gc.md)
        # the whole session directory, so that S3 multipart uploads of requests that died go too (a
        # listing of the objects and one of the open uploads: deleting by name would leave those)
        with contextlib.suppress(UploadUnknown):
            await self.cancel(upload.name, upload.id)
        return upload.size

    async def _publish(self, upload: UploadInfo, digest: Digest) -> None:
        """Move the verified data under its digest, unless a large blob is there already."""
        data_path = paths.upload_data(upload.name, upload.id)
        view = await self.blobs.watch.view()
        if self._local or upload.size > ASK_ABOVE:
            try:
                await self.blobs.stat(digest, check=True)  # in storage: never skip storing on a cache's word
                return
            except BlobUnknown:
                pass
        await self.driver.move(data_path, paths.blob_data(digest), upload.size)
        self.blobs.remember(digest, upload.size, view)

    def _fresh(self, upload: UploadInfo) -> bytes | None:
        """The resume token of a session that holds no data yet (b""), when it is known to hold none."""
        return b"" if upload.size == 0 and not upload.data_stored and not self._local else None

    async def cancel(self, name: str, upload_id: str) -> None:
        try:
            await self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFound:
            raise UploadUnknown(upload_id) from None
        finally:
            self.release_lock(name, upload_id)

    async def _pump(self, chunks: AsyncIterator[bytes], writer: FileWriter, hasher: Hasher) -> int:
        """Receive into ~4 MiB batches; hash and write each while the next one is received.

        A batch stays a list of the received pieces: hashed piece by piece and written with one gathered
        write, never joined into one buffer (that copy cost ~0.1-0.2 CPU-s per GB)."""
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
                    batch, parts = parts, []
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
                await self._store(parts, writer, hasher)
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
        return total

    async def _store(self, batch: list[bytes], writer: FileWriter, hasher: Hasher) -> None:
        await asyncio.gather(self._run(_update_all, hasher, batch), writer.write_parts(batch))

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @staticmethod
    def _observe(upload: UploadInfo, size: int) -> None:
        """The data's length as a writer found it; another length than read means someone else wrote."""
        if size != upload.size:
            upload.size = size
            upload.states = None

    async def _hasher(self, upload: UploadInfo, algorithm: str | None = None
                      ) -> tuple[ResumableHasher, bytes | None]:
        """The hash of the data so far, from the saved state or hashed again from the stored data, and the
        driver's token saved with the state (None when there is none)."""
        algorithm = algorithm or upload.algorithm
        if upload.size == 0:
            return new_hasher(algorithm), self._fresh(upload)
        if upload.states is None or (algorithm, upload.size) in upload.states:
            state_path = paths.upload_hashstate(upload.name, upload.id, algorithm, upload.size)
            try:
                state, resume = _split_state(await self.driver.get_content(state_path))
                return restore_hasher(algorithm, state), resume
            except (PathNotFound, ValueError):
                pass
        hasher = new_hasher(algorithm)
        try:
            async for chunk in self.driver.reader(paths.upload_data(upload.name, upload.id), 0, upload.size):
                await self._run(hasher.update, chunk)
        except PathNotFound:
            # no state and the data not readable (a session still open in S3): the client starts over
            raise UploadUnknown(upload.id) from None
        return hasher, None

    async def _save_state(self, upload: UploadInfo, algorithm: str, hasher: ResumableHasher,
                          resume: bytes | None = None) -> None:
        """Save the hash state at the upload's size (with the driver's ``resume`` token); on local disk
        then delete the other states of ``algorithm``.

        The new state is written first, so that a crash in between leaves at worst a stale state (it
        never matches the data's length, and goes with the session).
        """
        size = upload.size
        saved = {(algorithm, size)} if size or algorithm != DEFAULT_ALGORITHM else set()
        if saved:  # (a sha256 session without a state starts empty)
            state = hasher.serialize()
            if resume is not None:
                state = STATE_MAGIC + len(state).to_bytes(4, "big") + state + resume
            await self.driver.put_content(paths.upload_hashstate(upload.name, upload.id, algorithm, size), state)
        states = upload.states
        if states is None:
            states = await self._list_states(upload, algorithm)
        stale = [offset for alg, offset in states if alg == algorithm and offset != size]
        if self._local:
            await asyncio.gather(*(
                self.driver.delete_file(paths.upload_hashstate(upload.name, upload.id, algorithm, offset))
                for offset in stale
            ))
        elif len(stale) >= STATES_KEPT:
            directory = paths.upload_hashstates_dir(upload.name, upload.id, algorithm)
            await self.driver.delete_objects([(directory, [
                paths.upload_hashstate(upload.name, upload.id, algorithm, offset) for offset in stale])])
        else:
            stale = []
        upload.states = frozenset({(alg, o) for alg, o in states if alg != algorithm or o not in stale} | saved)

    async def _list_states(self, upload: UploadInfo, algorithm: str) -> frozenset[tuple[str, int]]:
        directory = paths.upload_hashstates_dir(upload.name, upload.id, algorithm)
        try:
            names = await self.driver.list(directory)
        except PathNotFound:
            return frozenset()
        return frozenset((algorithm, int(n)) for n in names if n.isdigit())

    async def close(self) -> None:
        self._pool.shutdown(wait=False)


async def _at_most(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The chunks, refused (SizeMismatch) as soon as they exceed the ``limit`` the client declared."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise SizeMismatch(f"declared {limit} bytes, received more")
        yield chunk


def _split_state(content: bytes) -> tuple[bytes, bytes | None]:
    """A saved state object: the hash state, and the driver's resume token if one was saved with it."""
    if not content.startswith(STATE_MAGIC):
        return content, None
    length = int.from_bytes(content[len(STATE_MAGIC) : len(STATE_MAGIC) + 4], "big")
    start = len(STATE_MAGIC) + 4
    return content[start : start + length], content[start + length :]


def _update_all(hasher: Hasher, parts: list[bytes]) -> None:
    for part in parts:
        hasher.update(part)


def _state_algorithm(directory: str) -> str | None:
    """The algorithm of a ``<alg>-moorage`` hash state directory; None for others (Distribution's)."""
    algorithm = directory.removesuffix(paths.HASHSTATE_SUFFIX)
    return algorithm if algorithm != directory and algorithm in HASHERS else None


def _parse_state(path: str) -> tuple[str, int] | None:
    """(algorithm, offset) of ``hashstates/<alg>-moorage/<offset>``; None for anything else."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != paths.HASHSTATES or not parts[2].isdigit():
        return None
    algorithm = _state_algorithm(parts[1])
    return None if algorithm is None else (algorithm, int(parts[2]))


def _algorithm(states: frozenset[tuple[str, int]], size: int) -> str:
    """The session's algorithm: that of the state at the data's length, else of the newest state."""
    if not states:
        return DEFAULT_ALGORITHM
    return min(states, key=lambda state: (state[1] != size, -state[1], state[0]))[0]
