"""S3 driver: Distribution's s3-aws bucket layout, so both registries can serve one bucket.

A path maps to the key ``rootdirectory + path`` (slashes trimmed), exactly like Distribution's
``s3Path``; a directory is any prefix that some key continues with ``/``.  Every boto3 call runs on a
bounded thread pool, never on the event loop, so one slow S3 request stalls nothing else.

An append writer (an upload session) streams into one multipart upload that stays open across
requests.  ``close`` sends the full parts and puts a tail shorter than S3's 5 MiB minimum part into the
object ``<key>.tail-<offset>``; a session that never filled a part is a plain object at the key.  What
the session holds (upload id, parts, tail) is the writer's ``resume`` token, which the caller keeps with
its own state and hands to the next ``writer(append=True, resume=...)``, in any process: no request is
spent finding the session again, and parts beyond those the token names come from a request that died
and are overwritten.  ``commit`` completes the upload, the tail becoming the last part by a server-side
copy: bytes go to S3 once, unless a client sends more after a chunk shorter than 5 MiB (that tail is
read back and sent again with them: S3 has no other way to join it).  Client chunks are never held in
memory between requests and a replica can die at any time.  A plain object continued past 5 MiB is
copied server-side into the first part.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from storage.breaker import CircuitBreaker
from storage.driver.base import BaseDriver, check_path
from storage.driver.interface import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    KeyPage,
    PathNotFound,
    StorageError,
    StorageUnavailable,
)
from storage.driver.s3_config import MAX_PART, MIN_PART, S3Parameters
from storage.guard import Guard
from storage.metrics import s3_requests

T = TypeVar("T")
READ_CHUNK = 1 << 20
MAX_PARTS = 10_000
PRESIGN_EXPIRY = 20 * 60
DELETE_BATCH = 1000  # DeleteObjects' limit
NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
# the configuration is wrong, not the request: a 503 that says what to fix (an operator may create the
# bucket or fix the keys while the registry runs; it recovers by itself)
NO_BUCKET = "NoSuchBucket"
REFUSED_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden",
                           "InvalidToken", "ExpiredToken", "AllAccessDisabled"})
# the endpoint is overloaded or failing (after botocore's retries): a 503 to the client, not a 500
UNAVAILABLE_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                               "Throttling", "ThrottlingException"})
UNREACHABLE = (EndpointUnreachable, HTTPClientError)  # refused, timed out, reset, cut mid-body
CONTENT_TYPE = "application/octet-stream"
TAIL_SUFFIX = ".tail-"  # + the offset it starts at: an append session's tail shorter than a part


class S3Error(StorageError):
    """An S3 request failed; ``code`` is S3's error code (e.g. ``InvalidRange``)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class S3Driver(BaseDriver):
    name = "s3"

    def __init__(self, params: S3Parameters, redirect: bool = True) -> None:
        self.params = params
        self.bucket = params.bucket
        self.redirect = redirect
        self._root = params.rootdirectory.rstrip("/")
        self._object_args = params.object_args()
        self._pool = ThreadPoolExecutor(max_workers=params.maxthreads, thread_name_prefix="s3")
        self.client = params.client()
        self.endpoint = params.endpoint_url or f"AWS S3 {params.region}"
        self.breaker = CircuitBreaker(f"S3 endpoint {self.endpoint}", params.breakerthreshold,
                                      params.breakercooldown)
        self._probe_client = params.client(probe=True)
        self.guard = Guard(f"S3 endpoint {self.endpoint}", self._pool, self.breaker, self._probe,
                           params.probeafter, params.probetimeout)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.client.meta.events.register("before-send.s3", self._count_request)

    @classmethod
    def from_parameters(cls, params: S3Parameters | Mapping[str, Any], redirect: bool = True) -> S3Driver:
        """Build from the ``storage.s3`` section; ``redirect=False`` for ``storage.redirect.disable``."""
        return cls(S3Parameters.parse(params), redirect=redirect)

    # --- request accounting -------------------------------------------------------------------------

    def _count_request(self, event_name: str, **_: object) -> None:
        """Count HTTP requests (retries included) per S3 operation: the bill is per request."""
        operation = event_name.rsplit(".", 1)[-1]
        s3_requests.labels(operation).inc()
        with self._counts_lock:
            self._counts[operation] += 1

    def request_counts(self, reset: bool = False) -> dict[str, int]:
        """S3 requests sent so far, by operation name (e.g. ``{"HeadObject": 3}``)."""
        with self._counts_lock:
            counts = dict(self._counts)
            if reset:
                self._counts.clear()
        return counts

    # --- helpers -------------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a driver path (Distribution's ``s3Path``); refuses malformed paths."""
        return (self._root + check_path(path)).lstrip("/")

    def _dir_prefix(self, path: str) -> str:
        """The prefix all keys below directory ``path`` share ("" for the bucket root)."""
        return self.key(path) + "/" if path != "/" else (self._root + "/").lstrip("/")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.guard.run(fn, *args, **kwargs)

    def _probe(self) -> None:
        """One HEAD with a short timeout on its own connection: any answer means the endpoint lives."""
        try:
            self._probe_client.head_object(Bucket=self.bucket, Key=self.key("/_moorage/probe"))
        except ClientError:
            pass  # 404, 403, even 5xx: it answered

    def _call(self, path: str, operation: str, **kwargs: Any) -> Any:
        """One S3 request (in a pool thread), with S3 errors turned into the driver's errors: an
        unreachable, hanging or failing endpoint is StorageUnavailable, and feeds the breaker."""
        try:
            result = getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in UNAVAILABLE_CODES or status >= 500:
                self.breaker.failure()
                raise StorageUnavailable(f"s3 {operation} {path}: {e}", reason=f"S3 endpoint {self.endpoint} "
                                         f"answers {code or status}") from e
            self.breaker.success()
            if code == NO_BUCKET:
                raise StorageUnavailable(f"s3 {operation} {path}: {e}",
                                         reason=self.misconfigured("does not exist")) from None
            if code in REFUSED_CODES:
                raise StorageUnavailable(f"s3 {operation} {path}: {e}",
                                         reason=self.misconfigured(f"refuses these credentials ({code})")) from None
            if code in NOT_FOUND:
                raise PathNotFound(path) from None
            raise S3Error(f"s3 {operation} {path}: {e}", code) from e
        except UNREACHABLE as e:
            self.breaker.failure()
            raise StorageUnavailable(f"s3 {operation} {path}: {e}",
                                     reason=f"S3 endpoint {self.endpoint} does not answer") from e
        except BotoCoreError as e:
            raise S3Error(f"s3 {operation} {path}: {e}") from e
        self.breaker.success()
        return result

    def misconfigured(self, what: str) -> str:
        """Why every request fails until the operator acts: the bucket is missing or refuses us."""
        return f"S3 bucket {self.bucket!r} at {self.endpoint} {what}"

    def _list_pages(self, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        token: dict[str, str] = {}
        while True:
            page = self._call(path, "list_objects_v2", **kwargs, **token)
            yield page
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    # --- whole objects -------------------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        return await self._run(self._get_sync, path, self.key(path), None)

    def _get_sync(self, path: str, key: str, byte_range: str | None) -> bytes:
        response = self._call(path, "get_object", Key=key, **({"Range": byte_range} if byte_range else {}))
        with response["Body"] as body:
            return body.read()

    async def put_content(self, path: str, content: bytes) -> None:
        # a PutObject is atomic: readers see the old or the new object
        await self._run(self._put_sync, path, self.key(path), content)

    def _put_sync(self, path: str, key: str, content: bytes | bytearray) -> None:
        self._call(path, "put_object", Key=key, Body=bytes(content), ContentType=CONTENT_TYPE,
                   **self._object_args)

    # --- reading -------------------------------------------------------------------------------------

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        key = self.key(path)
        if offset < 0:
            raise InvalidOffset(path, offset)
        if length == 0:
            info = await self.stat(path)
            if info.is_dir:
                raise PathNotFound(path)
            if offset > info.size:
                raise InvalidOffset(path, offset)
            return
        body = await self._run(self._open_sync, path, key, offset, length)
        if body is None:
            return
        try:
            while True:
                chunk = await self._run(self._read_sync, path, body)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    def _read_sync(self, path: str, body: Any) -> bytes:
        try:
            return body.read(READ_CHUNK)  # type: ignore[no-any-return]
        except UNREACHABLE as e:  # the connection broke or stalled mid-body
            self.breaker.failure()
            raise StorageUnavailable(f"s3 get_object {path}: {e}",
                                     reason=f"S3 endpoint {self.endpoint} stopped sending") from e
        except BotoCoreError as e:
            raise S3Error(f"s3 get_object {path}: {e}") from e

    def _open_sync(self, path: str, key: str, offset: int, length: int | None) -> Any:
        """The streaming body of a (Range) GET; None when ``offset`` is exactly the object's end."""
        kwargs: dict[str, str] = {}
        if offset or length is not None:
            kwargs["Range"] = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        try:
            return self._call(path, "get_object", Key=key, **kwargs)["Body"]
        except S3Error as e:
            if e.code != "InvalidRange":
                raise
        # 416: the range starts at or after the end; only the first is a valid (empty) read
        size = self._call(path, "head_object", Key=key)["ContentLength"]
        if offset > size:
            raise InvalidOffset(path, offset)
        return None

    # --- metadata ------------------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        return await self._run(self._stat_sync, path)

    def _stat_sync(self, path: str) -> FileInfo:
        key = self.key(path)
        if path != "/":
            try:
                head = self._call(path, "head_object", Key=key)
                return FileInfo(path, head["ContentLength"], head["LastModified"].timestamp(), False)
            except PathNotFound:
                pass
        page = self._call(path, "list_objects_v2", Prefix=self._dir_prefix(path), MaxKeys=1)
        contents = page.get("Contents")
        if not contents:
            raise PathNotFound(path)
        return FileInfo(path, 0, contents[0]["LastModified"].timestamp(), True)

    async def stat_file(self, path: str) -> FileInfo:
        head = await self._run(self._call, path, "head_object", Key=self.key(path))
        return FileInfo(path, head["ContentLength"], head["LastModified"].timestamp(), False)

    async def list(self, path: str) -> list[str]:
        return await self._run(self._list_sync, path)

    def _list_sync(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        names: list[str] = []
        for page in self._list_pages(path, Prefix=prefix, Delimiter="/"):
            names.extend(obj["Key"][len(prefix) :] for obj in page.get("Contents", ()))
            names.extend(p["Prefix"][len(prefix) : -1] for p in page.get("CommonPrefixes", ()))
        names = sorted(n for n in names if n)
        if not names and path != "/":
            raise PathNotFound(path)
        return names

    async def list_nested(self, path: str, depth: int) -> list[str]:
        # one flat listing (1 request per 1,000 keys) instead of one per directory
        return await self._run(self._list_nested_sync, path, depth)

    def _list_nested_sync(self, path: str, depth: int) -> list[str]:
        prefix = self._dir_prefix(path)
        depth = max(depth, 1)
        found: set[str] = set()
        empty = True
        for page in self._list_pages(path, Prefix=prefix):
            for obj in page.get("Contents", ()):
                parts = obj["Key"][len(prefix) :].split("/")
                if parts[0]:
                    empty = False
                if len(parts) >= depth and all(parts[:depth]):
                    found.add("/".join(parts[:depth]))
        if empty and path != "/":
            raise PathNotFound(path)
        return sorted(found, key=lambda name: name.split("/"))

    async def list_keys(self, path: str, start_after: str = "", delimiter: str = "",
                        limit: int = 1000) -> KeyPage:
        return await self._run(self._list_keys_sync, path, start_after, delimiter, limit)

    def _list_keys_sync(self, path: str, start_after: str, delimiter: str, limit: int) -> KeyPage:
        prefix = self._dir_prefix(path)
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": limit}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = prefix + start_after
        page = self._call(path, "list_objects_v2", **kwargs)
        names = [obj["Key"][len(prefix) :] for obj in page.get("Contents", ())]
        names += [p["Prefix"][len(prefix) :] for p in page.get("CommonPrefixes", ())]
        names.sort()
        next_start = start_after
        if names:
            last = names[-1]
            # past a group: StartAfter=<group> would return the keys it stands for again
            next_start = last[:-1] + chr(ord(last[-1]) + 1) if delimiter and last.endswith(delimiter) else last
        truncated = bool(page.get("IsTruncated")) and next_start > start_after
        return KeyPage([n for n in names if n], truncated, next_start)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        # one flat listing (1 request per 1,000 keys) instead of a list + stat per entry
        for info in await self._run(self._walk_sync, path):
            yield info

    def _walk_sync(self, path: str) -> list[FileInfo]:
        prefix = self._dir_prefix(path)
        root = _Tree()
        for page in self._list_pages(path, Prefix=prefix):
            for obj in page.get("Contents", ()):
                parts = [p for p in obj["Key"][len(prefix) :].split("/") if p]
                if parts and not obj["Key"].endswith("/"):  # "dir/" markers some tools create are no files
                    root.add(parts, obj["Size"], obj["LastModified"].timestamp())
        if not root.files and not root.dirs and path != "/":
            raise PathNotFound(path)
        return list(root.infos(path.rstrip("/")))

    # --- moving and deleting -------------------------------------------------------------------------

    async def move(self, source: str, dest: str, size: int | None = None) -> None:
        src, dst = self.key(source), self.key(dest)
        if size is None:
            size = (await self._run(self._call, source, "head_object", Key=src))["ContentLength"]
        if src == dst:
            return  # S3 refuses to copy an object onto itself, and deleting the source would lose it
        if size <= self.params.multipartcopythresholdsize:
            await self._run(
                self._call, source, "copy_object", Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                **self._object_args,
            )
        else:
            upload_id = (await self._run(self._call, dest, "create_multipart_upload", Key=dst,
                                         ContentType=CONTENT_TYPE, **self._object_args))["UploadId"]
            try:
                chunk = max(self.params.multipartcopychunksize, -(-size // MAX_PARTS))
                parts = await self._copy_parts(source, src, dst, upload_id, size, chunk, 1)
                await self._run(self._call, dest, "complete_multipart_upload", Key=dst, UploadId=upload_id,
                                MultipartUpload={"Parts": parts})
            except BaseException:
                await self._abort(dest, dst, upload_id)
                raise
        await self._run(self._call, source, "delete_object", Key=src)

    async def _copy_parts(
        self, path: str, src: str, dst: str, upload_id: str, size: int, chunk: int, first: int
    ) -> list[dict[str, Any]]:
        """UploadPartCopy ``src`` into parts ``first``.. of ``chunk`` bytes, a bounded number at a time."""
        limit = asyncio.Semaphore(self.params.multipartcopymaxconcurrency)

        async def copy(number: int, start: int) -> dict[str, Any]:
            async with limit:
                result = await self._run(
                    self._call, path, "upload_part_copy", Key=dst, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": src},
                    CopySourceRange=f"bytes={start}-{min(start + chunk, size) - 1}",
                )
            return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

        starts = range(0, size, chunk)
        return list(await asyncio.gather(*(copy(first + i, start) for i, start in enumerate(starts))))

    async def _abort(self, path: str, key: str, upload_id: str) -> None:
        try:
            await self._run(self._call, path, "abort_multipart_upload", Key=key, UploadId=upload_id)
        except StorageError:
            pass  # the original error matters more; a bucket lifecycle rule reaps what is left

    async def delete(self, path: str) -> None:
        await self._run(self._delete_sync, path)

    def _delete_sync(self, path: str) -> None:
        key = self.key(path)
        below = self._dir_prefix(path)
        keys: list[str] = []
        # Prefix=key also lists siblings such as "key-x": keep only the key itself and what is below it
        for page in self._list_pages(path, Prefix=key if path != "/" else below):
            keys.extend(o["Key"] for o in page.get("Contents", ())
                        if o["Key"] == key or o["Key"].startswith(below))
        if not keys:
            raise PathNotFound(path)
        self._delete_keys_sync(path, keys)
        if keys != [key]:
            # a directory: abort multipart uploads a crashed writer left below it (abandoned upload sessions)
            for upload in self._call(path, "list_multipart_uploads", Prefix=below).get("Uploads", ()):
                try:
                    self._call(path, "abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
                except StorageError:
                    pass  # finished or aborted meanwhile

    def _delete_keys_sync(self, path: str, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + DELETE_BATCH]]
            result = self._call(path, "delete_objects", Delete={"Objects": batch, "Quiet": True})
            if result.get("Errors"):
                error = result["Errors"][0]
                message = f"s3 delete_objects {error.get('Key')}: {error.get('Message')}"
                raise S3Error(message, error.get("Code", ""))

    async def delete_file(self, path: str) -> None:
        # DeleteObject succeeds whether or not the key exists: no listing first
        await self._run(self._call, path, "delete_object", Key=self.key(path))

    async def delete_objects(self, groups: Sequence[tuple[str, Sequence[str] | None]]) -> None:
        keys = [self.key(path) for _, files in groups if files is not None for path in files]
        if keys:  # missing keys are no error to DeleteObjects
            await self._run(self._delete_keys_sync, groups[0][0], keys)
        for directory, files in groups:
            if files is None:
                await self.delete_tree(directory)

    # --- the rest ------------------------------------------------------------------------------------

    async def writer(self, path: str, append: bool = False, resume: bytes | None = None) -> FileWriter:
        key = self.key(path)
        if not append:
            return S3Writer(self, path, key, Session(), truncate=True)
        session = Session.parse(resume) if resume is not None else None
        if session is None:  # not told: the object at the key is all there is to continue
            try:
                whole = (await self._run(self._call, path, "head_object", Key=key))["ContentLength"]
            except PathNotFound:
                whole = 0
            session = Session(whole=whole)
        return S3Writer(self, path, key, session, truncate=False)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if not self.redirect or operation is None:
            return None
        # presigning sends nothing, but resolving credentials may (instance metadata): keep it off the loop
        return await self._run(
            self.client.generate_presigned_url, operation, {"Bucket": self.bucket, "Key": self.key(path)},
            PRESIGN_EXPIRY,
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True)
        self.guard.close()
        self.client.close()
        self._probe_client.close()


class _Tree:
    """Keys of a flat listing arranged as directories, to walk them depth first in sorted order."""

    __slots__ = ("dirs", "files", "modified")

    def __init__(self) -> None:
        self.dirs: dict[str, _Tree] = {}
        self.files: dict[str, tuple[int, float]] = {}
        self.modified = 0.0

    def add(self, parts: list[str], size: int, modified: float) -> None:
        node = self
        for part in parts[:-1]:
            node = node.dirs.setdefault(part, _Tree())
            node.modified = max(node.modified, modified)
        node.files[parts[-1]] = (size, modified)

    def infos(self, base: str) -> Iterator[FileInfo]:
        for name in sorted(self.dirs.keys() | self.files.keys()):
            child = f"{base}/{name}"
            if name in self.files:
                size, modified = self.files[name]
                yield FileInfo(child, size, modified, False)
            if name in self.dirs:
                sub = self.dirs[name]
                yield FileInfo(child, 0, sub.modified, True)
                yield from sub.infos(child)


@dataclass
class Session:
    """What an append session holds in the bucket: a plain object of ``whole`` bytes at the key, or an open
    multipart upload with its ``parts`` (number, ETag, size) and a ``tail`` of bytes in its own object."""

    upload_id: str | None = None
    parts: list[tuple[int, str, int]] = field(default_factory=list)
    tail: int = 0
    whole: int = 0

    @property
    def size(self) -> int:
        return self.whole + sum(size for _, _, size in self.parts) + self.tail

    @property
    def tail_start(self) -> int:
        return sum(size for _, _, size in self.parts)

    def token(self) -> bytes:
        return json.dumps({"u": self.upload_id, "p": self.parts, "t": self.tail, "w": self.whole}).encode()

    @classmethod
    def parse(cls, token: bytes) -> Session | None:
        """The session a token names (b"": a new one); None when it is not a token."""
        if not token:
            return cls()
        try:
            found = json.loads(token)
            return cls(found["u"], [(int(n), str(e), int(z)) for n, e, z in found["p"]], int(found["t"]),
                       int(found["w"]))
        except (ValueError, KeyError, TypeError):
            return None


class S3Writer(FileWriter):
    """Streams into one multipart upload (see the module's doc).  A plain writer completes it on ``close``
    or ``commit``; an append session only on ``commit``, and ``close`` stages it (``resume``).

    Up to ``uploadconcurrency`` parts are sent at once while the caller keeps writing: one connection
    rarely saturates an S3 server.  The parts in flight are the only bytes held in memory.
    """

    def __init__(self, driver: S3Driver, path: str, key: str, session: Session, truncate: bool) -> None:
        self._driver = driver
        self._path = path
        self._key = key
        self._s = session
        self._session = not truncate  # an append session: stays open until commit
        self._created_upload = False  # this writer started the multipart upload (discard aborts it)
        self._continued = False  # the object or tail it continues is in parts or the buffer now
        self._next_part = max((n for n, _, _ in session.parts), default=0) + 1
        self._buffer = bytearray()
        self._size = session.size
        self._inflight: set[asyncio.Future[None]] = set()
        self._changed = truncate  # a truncating writer replaces the object even when nothing is written
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def resume(self) -> bytes | None:
        return self._s.token() if self._session else None

    def _tail_key(self, start: int) -> str:
        return f"{self._key}{TAIL_SUFFIX}{start}"

    async def write(self, data: bytes | memoryview) -> None:
        if self._done:
            raise ValueError("writer is closed")
        if not data:
            return
        if not self._continued:
            await self._continue()
        self._buffer += data
        self._size += len(data)
        self._changed = True
        chunk = self._driver.params.chunksize
        while len(self._buffer) >= chunk:
            part = bytes(self._buffer[:chunk])
            del self._buffer[:chunk]
            await self._send_part(part)

    async def _continue(self) -> None:
        """Before new bytes: what the session ends with must become part of what they follow."""
        self._continued = True
        d, s = self._driver, self._s
        if s.upload_id is None and s.whole >= MIN_PART:
            await self._start_upload()  # the object so far becomes the first part(s), copied inside S3
            chunk = -(-s.whole // -(-s.whole // MAX_PART))  # as few parts as S3 allows, evenly cut
            copied = await d._copy_parts(self._path, self._key, self._key, s.upload_id, s.whole,  # type: ignore[arg-type]
                                         chunk, 1)
            s.parts = [(p["PartNumber"], p["ETag"], min(chunk, s.whole - start))
                       for p, start in zip(copied, range(0, s.whole, chunk), strict=True)]
            self._next_part = len(s.parts) + 1
            s.whole = 0
        elif s.upload_id is None and s.whole:  # too small to be a part: read back, sent with the new bytes
            self._buffer[:0] = await d._run(d._get_sync, self._path, self._key, f"bytes=0-{s.whole - 1}")
            s.whole = 0
        elif s.tail:  # likewise the tail: a part before the new bytes could not be smaller than 5 MiB
            self._buffer[:0] = await d._run(d._get_sync, self._path, self._tail_key(s.tail_start),
                                            f"bytes=0-{s.tail - 1}")
            s.tail = 0

    async def _start_upload(self) -> None:
        d = self._driver
        self._s.upload_id = (await d._run(d._call, self._path, "create_multipart_upload", Key=self._key,
                                          ContentType=CONTENT_TYPE, **d._object_args))["UploadId"]
        self._created_upload = True

    async def _send_part(self, data: bytes) -> None:
        """Start uploading a part; waits only while ``uploadconcurrency`` parts are in flight."""
        d = self._driver
        if self._s.upload_id is None:
            await self._start_upload()
        while len(self._inflight) >= d.params.uploadconcurrency:
            await self._wait(asyncio.FIRST_COMPLETED)
        number = self._next_part
        if number > MAX_PARTS:
            raise StorageError(f"{self._path}: more than {MAX_PARTS} parts in one upload")
        self._next_part += 1
        self._inflight.add(asyncio.ensure_future(self._upload_part(number, data)))

    async def _upload_part(self, number: int, data: bytes) -> None:
        d = self._driver
        result = await d._run(d._call, self._path, "upload_part", Key=self._key, UploadId=self._s.upload_id,
                              PartNumber=number, Body=data)
        self._s.parts.append((number, result["ETag"], len(data)))

    async def _wait(self, when: str = asyncio.ALL_COMPLETED) -> None:
        """Wait for part uploads; the first failure is raised (after every part has stopped)."""
        if not self._inflight:
            return
        done, self._inflight = await asyncio.wait(self._inflight, return_when=when)
        for future in done:
            if future.exception() is not None:
                await asyncio.gather(*self._inflight, return_exceptions=True)
                self._inflight = set()
                raise future.exception()  # type: ignore[misc]

    async def commit(self) -> None:
        await self._finish()

    async def close(self) -> None:
        if self._session:
            await self._stage()
        else:
            await self._finish()

    async def _stage(self) -> None:
        """End a request of an append session: full parts sent, the rest in a tail or a plain object."""
        if self._done:
            return
        self._done = True
        if not self._changed:
            return  # nothing written: the session stays as it was
        d, s = self._driver, self._s
        try:
            if s.upload_id is None:  # never filled a part: the session is a plain object
                await d._run(d._put_sync, self._path, self._key, self._buffer)
                s.whole = len(self._buffer)
            elif len(self._buffer) >= MIN_PART:
                await self._send_part(bytes(self._buffer))
            await self._wait()
            if s.upload_id is not None and MIN_PART > len(self._buffer) > 0:
                await d._run(d._put_sync, self._path, self._tail_key(s.tail_start), self._buffer)
                s.tail = len(self._buffer)
        except BaseException:
            await asyncio.gather(*self._inflight, return_exceptions=True)
            raise
        self._buffer.clear()

    async def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        d, s = self._driver, self._s
        try:
            if s.upload_id is None:
                if self._changed:
                    await d._run(d._put_sync, self._path, self._key, self._buffer)
                    s.whole = len(self._buffer)
                return  # else: the plain object at the key is the session's whole content already
            if self._buffer or not s.parts and not self._inflight and not s.tail:
                await self._send_part(bytes(self._buffer))  # the last part may be small
            self._buffer.clear()
            await self._wait()
            if s.tail:  # the staged tail becomes the last part without sending its bytes again
                result = await d._run(d._call, self._path, "upload_part_copy", Key=self._key, UploadId=s.upload_id,
                                      PartNumber=self._next_part,
                                      CopySource={"Bucket": d.bucket, "Key": self._tail_key(s.tail_start)},
                                      CopySourceRange=f"bytes=0-{s.tail - 1}")
                s.parts.append((self._next_part, result["CopyPartResult"]["ETag"], s.tail))
                s.tail = 0
            parts = [{"PartNumber": n, "ETag": e} for n, e, _ in sorted(s.parts)]
            await d._run(d._call, self._path, "complete_multipart_upload", Key=self._key,
                         UploadId=s.upload_id, MultipartUpload={"Parts": parts})
            s.whole, s.upload_id, s.parts = s.size, None, []
        except BaseException:
            await asyncio.gather(*self._inflight, return_exceptions=True)
            if s.upload_id is not None and not self._session:
                await d._abort(self._path, self._key, s.upload_id)
            raise

    async def discard(self) -> None:
        """Nothing is staged: the session stays as its token says, so parts sent by this writer are
        ignored and overwritten by the next one (an upload this writer started is aborted)."""
        self._done = True
        self._buffer.clear()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight = set()
        if self._created_upload and self._s.upload_id is not None:
            await self._driver._abort(self._path, self._key, self._s.upload_id)

    async def cancel(self) -> None:
        self._done = True
        self._buffer.clear()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight = set()
        d, s = self._driver, self._s
        if s.upload_id is not None:
            await d._abort(self._path, self._key, s.upload_id)
        keys = [self._key] + ([self._tail_key(s.tail_start)] if s.tail else [])
        await d._run(d._delete_keys_sync, self._path, keys)
