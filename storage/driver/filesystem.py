"""Filesystem driver: Distribution's on-disk layout below ``rootdirectory``.

Blocking calls run on a small dedicated thread pool so that large reads and writes make few thread
hops.  Whole-object writes go to a temporary file in ``.moorage-tmp/`` below the root, are fsynced and
renamed into place, so a crash leaves the old object or the new one, never a torn one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import random
import shutil
import stat
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from configkit import Bool, Section, Str
from storage.driver.base import BaseDriver, check_path
from storage.driver.direct import DirectAppender, StagePool
from storage.driver.interface import FileInfo, FileWriter, InvalidOffset, PathNotFound

T = TypeVar("T")
log = logging.getLogger("moorage.storage")
SYNC_FILE_RANGE_WRITE = 2
CONCURRENT_CHANGE_ATTEMPTS = 10  # passes over a directory another request writes into or deletes meanwhile
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting (Linux ``sync_file_range``).

    Uploads then overlap disk writes with receiving, and the fsync before publishing has little left.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def fsync_directory(directory: str) -> None:
    """Make the entries of ``directory`` (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


READ_CHUNK = 1 << 20
IOV_MAX = 512  # pieces per writev (Linux allows 1024)
TEMP_PREFIX = ".moorage-tmp-"
TEMP_DIR = ".moorage-tmp"  # below the root, beside Distribution's docker/: whole-object writes start here
# Creating a file locks its directory while the filesystem finds it an inode: with one temporary
# directory, concurrent PUTs queued there (7 % of PUT c16's CPU spun on that lock); 16 spread them.
TEMP_SHARDS = 16
STALE_TEMP_AGE = 600.0  # a temporary file this old was left by a crash (a write takes milliseconds)
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE_FILE = "/proc/self/ns/pid"
DIR_CACHE_ENTRIES = 65536
WALK_CHUNK = 4096  # entries a walk reads per thread hop
DELETE_THREADS = 8  # threads deleting one batch of objects
LINK_CACHE_ENTRIES = 65536
LINK_CACHE_MAX_BYTES = 256  # links (71 bytes for sha256); manifests have their own cache
FRESH_NS = 2_000_000_000  # files younger than this are read, not trusted to a cached mtime


def make_directories(directory: str) -> None:
    """``os.makedirs``, where a concurrent delete of a parent (a tag deleted while it is pushed) is not an
    error: the rename into it (``place``) creates what is missing again."""
    with contextlib.suppress(FileNotFoundError):
        os.makedirs(directory, exist_ok=True)


def place(temp: str, full: str) -> None:
    """Rename ``temp`` to ``full``, creating its directory when needed (rather than checked every time)
    and again when a concurrent delete removed it in between."""
    for attempt in range(CONCURRENT_CHANGE_ATTEMPTS):
        try:
            os.replace(temp, full)
            return
        except FileNotFoundError:
            if attempt == CONCURRENT_CHANGE_ATTEMPTS - 1:
                raise
            make_directories(os.path.dirname(full))


def remove_tree(full: str) -> None:
    """``shutil.rmtree`` that another writer may race: what a concurrent delete removed first is gone
    anyway, and what a concurrent write put in meanwhile (``ENOTEMPTY``, or a directory removed and made
    again between rmtree's stat and open of it, which rmtree reports as a symbolic link with no errno:
    this layout has none) is removed by another pass. Either change may win; neither fails (a tag
    deleted while it is pushed)."""
    for attempt in range(CONCURRENT_CHANGE_ATTEMPTS):
        try:
            shutil.rmtree(full)
            return
        except OSError as e:
            if not isinstance(e, FileNotFoundError) and e.errno not in (errno.ENOTEMPTY, None):
                raise
            if not os.path.lexists(full):
                if attempt == 0 and isinstance(e, FileNotFoundError) and e.filename == full:
                    raise  # it was never there
                return
            if attempt == CONCURRENT_CHANGE_ATTEMPTS - 1:
                raise


def _boot_id() -> str | None:
    try:
        with open(BOOT_ID_FILE) as f:
            return f.read().strip().replace("-", "")[:12] or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace: pids of another container on the same host mean other processes."""
    try:
        return str(os.stat(PID_NAMESPACE_FILE).st_ino)
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a live process from one that reused its
    pid); None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return fields[19].decode() if len(fields) > 19 else None


BOOT_ID = _boot_id()
PID_NAMESPACE = _pid_namespace()


def temp_owner() -> str:
    """This process, as temporary file names carry it: ``<boot id>.<pid namespace>.<pid>.<start time>``
    (``unknown`` without /proc: such files are removed only by age)."""
    return _owner_of(os.getpid())  # by pid: a forked worker is another owner


@functools.lru_cache(maxsize=4)
def _owner_of(pid: int) -> str:
    start = _start_time(pid)
    if BOOT_ID is None or PID_NAMESPACE is None or start is None:
        return "unknown"
    return f"{BOOT_ID}.{PID_NAMESPACE}.{pid}.{start}"


def writer_alive(name: str) -> bool | None:
    """Whether the process that writes a temporary file still runs: known for processes of this boot and
    pid namespace (None for files of other boots, hosts or containers sharing the volume, or of earlier
    versions: a pid there says nothing about this machine's processes)."""
    owner = name[len(TEMP_PREFIX) :].rpartition("-")[0].split(".")
    if BOOT_ID is None or PID_NAMESPACE is None or len(owner) != 4 or owner[0] != BOOT_ID \
            or owner[1] != PID_NAMESPACE or not owner[2].isdigit():
        return None
    return _start_time(int(owner[2])) == owner[3]


def remove_stale_temp_files(directory: str, older_than: float) -> int:
    """Delete temporary files a crashed process left, in ``directory`` and its shards: at once those whose
    writer on this machine is dead (a restart cleans up after its previous incarnation), never those of a
    live one, and those of unknown writers (another host sharing the volume) when older than
    ``older_than``."""
    cutoff = time.time() - older_than
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.name.startswith(TEMP_PREFIX):
                    alive = writer_alive(entry.name)
                    if alive is False or alive is None and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                elif entry.is_dir(follow_symlinks=False):
                    removed += remove_stale_temp_files(entry.path, older_than)
            except FileNotFoundError:
                pass  # removed by another process meanwhile
    return removed


class FilesystemDriver(BaseDriver):
    name = "filesystem"

    def __init__(self, rootdirectory: str, fsync: bool = True, threads: int = 16, directwrites: bool = True) -> None:
        self.root = os.path.abspath(rootdirectory)
        self.fsync = fsync
        self.stages = StagePool() if directwrites else None  # large upload writes bypass the page cache
        os.makedirs(self.root, exist_ok=True)
        self.temp_dir = os.path.join(self.root, TEMP_DIR)
        try:
            os.makedirs(self.temp_dir, exist_ok=True)
            remove_stale_temp_files(self.temp_dir, STALE_TEMP_AGE)
        except OSError as e:  # a read-only volume still serves reads; writes report their own error
            log.warning("cannot prepare %s: %s", self.temp_dir, e)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fs")
        self._dir_cache: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        self._links: dict[str, tuple[tuple[int, int, int], bytes]] = {}

    def full_path(self, path: str) -> str:
        """Map a driver path to a file below the root; refuses anything that escapes it."""
        return os.path.join(self.root, *(p for p in check_path(path).split("/") if p))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def get_content(self, path: str) -> bytes:
        """Small metadata files are page-cached: read inline, cheaper than a thread hop.

        Links (tag -> digest, revisions, layers) are served from a cache validated by a stat of the file:
        every writer replaces a link by a rename (a new inode) or rewrites it (a new mtime), so a push by
        any process or replica sharing the disk is seen at once.  A file changed within the timestamp
        granularity could keep its mtime; one changed in the last ``FRESH_NS`` is therefore always read.
        """
        full = self.full_path(path)
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._links.get(full)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with open(full, "rb") as f:
                content = f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        if len(content) <= LINK_CACHE_MAX_BYTES and len(content) == st.st_size \
                and time.time_ns() - st.st_mtime_ns > FRESH_NS:
            self._links[full] = (key, content)
            if len(self._links) > LINK_CACHE_ENTRIES:
                self._links.pop(next(iter(self._links)))
        return content

    async def put_content(self, path: str, content: bytes) -> None:
        await self.run(self._put_sync, [(self.full_path(path), content)])

    async def put_contents(self, items: Sequence[tuple[str, bytes]]) -> None:
        await self.run(self._put_sync, [(self.full_path(path), content) for path, content in items])

    def _put_sync(self, items: list[tuple[str, bytes]]) -> None:
        """Write every item to a temporary file in ``.moorage-tmp/``, make them all durable, then rename
        them into place in order (a journaling filesystem commits renames in order).  Nothing partial is
        ever in the layout's directories: a crash leaves at most a temporary file there, which start-up
        removes (a tag whose ``current/`` held only a temporary file used to be listed).

        Writeback of every file starts before the first fsync, so on a journaling filesystem that fsync
        commits them all and the next ones find nothing left to do: one journal commit per group instead
        of one per file (measured on a private ext4: 2.3 commits per manifest PUT instead of 4).  The
        directories are not synced, as before: v3 does, and that doubled the commits per PUT under load.
        """
        temps: list[str] = []
        fds: list[int] = []
        try:
            for _, content in items:
                temp, fd = self._write_temp(content)
                temps.append(temp)
                fds.append(fd)
            while fds:
                if self.fsync:
                    os.fsync(fds[0])
                os.close(fds.pop(0))
            if len(items) > 1:  # every directory first: a group that cannot be placed publishes nothing
                for directory in dict.fromkeys(os.path.dirname(full) for full, _ in items):
                    # an existing directory (a tag's current/ after its first push) costs a stat; makedirs
                    # would try a mkdir first, which locks the parent against the other PUTs' renames
                    if not os.path.isdir(directory):
                        make_directories(directory)
            for (full, _), temp in zip(items, list(temps), strict=True):
                place(temp, full)
                temps.remove(temp)
        except BaseException:
            for fd in fds:
                os.close(fd)
            for temp in temps:  # a full disk or a failed rename leaves no temporary file behind
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            raise

    def _write_temp(self, content: bytes) -> tuple[str, int]:
        """A new temporary file holding ``content``, still open, its writeback started."""
        name = random.getrandbits(64)  # O_EXCL: never shared
        shard = os.path.join(self.temp_dir, f"{name % TEMP_SHARDS:x}")
        temp = os.path.join(shard, f"{TEMP_PREFIX}{temp_owner()}-{name:016x}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:  # a shard's first file, or removed since
            os.makedirs(shard, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                start_writeback(fd, 0, len(content))
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        return temp, fd

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        full = self.full_path(path)
        try:
            f = open(full, "rb")  # noqa: SIM115 - closed in the finally below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None
        try:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise InvalidOffset(path, offset)
            remaining = size - offset if length is None else min(length, size - offset)
            f.seek(offset)
            while remaining > 0:
                chunk = await self.run(f.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def writer(self, path: str, append: bool = False, resume: bytes | None = None) -> FileWriter:
        full = self.full_path(path)
        return await self.run(FilesystemWriter.open, self, full, append)

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self.full_path(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        is_dir = stat.S_ISDIR(st.st_mode)
        return FileInfo(path=path, size=0 if is_dir else st.st_size, modified=st.st_mtime, is_dir=is_dir)

    async def list(self, path: str) -> list[str]:
        full = self.full_path(path)
        try:
            mtime = os.stat(full).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        cached = self._dir_cache.get(full)
        if cached is not None and cached[0] == mtime:
            self._dir_cache.move_to_end(full)
            return cached[1]
        try:
            # listing a directory of the layout takes microseconds: cheaper inline than a thread hop
            names = sorted(n for n in os.listdir(full) if not n.startswith(TEMP_PREFIX))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        # a directory's mtime changes whenever an entry is added or removed: a cheap validator, except that
        # an entry added within the clock tick of the listing leaves it as it was, so a listing is kept only
        # when the directory had not changed for FRESH_NS before it (GC must see every new repository)
        if time.time_ns() - mtime > FRESH_NS:
            self._dir_cache[full] = (mtime, names)
            if len(self._dir_cache) > DIR_CACHE_ENTRIES:
                self._dir_cache.popitem(last=False)
        return names

    async def move(self, source: str, dest: str, size: int | None = None) -> None:
        await self.run(self._move_sync, self.full_path(source), self.full_path(dest), source)

    def _move_sync(self, source: str, dest: str, name: str) -> None:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.replace(source, dest)
        except FileNotFoundError:
            raise PathNotFound(name) from None
        if self.fsync:
            fsync_directory(os.path.dirname(dest))

    async def delete(self, path: str) -> None:
        await self.run(self._delete_sync, self.full_path(path), path)

    @staticmethod
    def _delete_sync(full: str, name: str) -> None:
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                remove_tree(full)
            else:
                try:
                    os.unlink(full)
                except IsADirectoryError:  # a concurrent writer made it a directory since the check
                    remove_tree(full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(name) from None

    async def delete_objects(self, groups: Sequence[tuple[str, Sequence[str] | None]]) -> None:
        # a GC batch is up to a thousand directories: a few threads, each unlinking what it knows is there
        work = [(self.full_path(directory), [self.full_path(f) for f in files] if files is not None else None)
                for directory, files in groups]
        share = -(-len(work) // DELETE_THREADS) or 1
        await asyncio.gather(*(self.run(_delete_groups, work[i : i + share]) for i in range(0, len(work), share)))

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Depth first in sorted order, read by a thread with ``scandir`` a few thousand entries at a time
        (the generic walk's list and stat per entry cost ~20 times more for GC's scan of ``blobs/``)."""
        full = self.full_path(path)
        try:
            top = await self.run(_sorted_entries, full)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        stack = [(path.rstrip("/"), top)]
        while stack:
            for info in await self.run(_walk_some, stack, WALK_CHUNK):
                yield info

    async def list_nested(self, path: str, depth: int) -> list[str]:
        """Inline ``scandir`` calls, uncached: GC reads every repository's revisions and links once."""
        full = self.full_path(path)
        found = _nested(full, max(depth, 1))
        if found is None:
            raise PathNotFound(path)
        return found

    def local_path(self, path: str) -> str | None:
        return self.full_path(path)

    async def close(self) -> None:
        self._pool.shutdown(wait=False)


def _delete_groups(groups: list[tuple[str, list[str] | None]]) -> None:
    """Unlink the files named, then remove their directory (whatever else it holds too)."""
    for directory, files in groups:
        for path in files or ():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:  # not empty: files nobody named (or none were named)
            shutil.rmtree(directory, onerror=_gone_is_fine)


def _sorted_entries(directory: str) -> list[os.DirEntry[str]]:
    """A directory's entries, temporary files left out, sorted in reverse (popped in order)."""
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(TEMP_PREFIX)), key=lambda e: e.name,
                      reverse=True)


def _walk_some(stack: list[tuple[str, list[os.DirEntry[str]]]], limit: int) -> list[FileInfo]:
    """Continue a depth-first walk (``stack``: each open directory's path and remaining entries) for up
    to ``limit`` entries; what vanished meanwhile is left out."""
    found: list[FileInfo] = []
    while stack and len(found) < limit:
        path, entries = stack[-1]
        if not entries:
            stack.pop()
            continue
        entry = entries.pop()
        child = f"{path}/{entry.name}"
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            found.append(FileInfo(child, 0, st.st_mtime, True))
            try:
                stack.append((child, _sorted_entries(entry.path)))
            except (FileNotFoundError, NotADirectoryError):
                continue
        else:
            found.append(FileInfo(child, st.st_size, st.st_mtime, False))
    return found


def _nested(directory: str, depth: int) -> list[str] | None:
    """``list_nested`` below a directory's path on disk; None when it is no directory."""
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(TEMP_PREFIX))
    except (FileNotFoundError, NotADirectoryError):
        return None
    if depth == 1:
        return names
    found = []
    for name in names:
        below = _nested(os.path.join(directory, name), depth - 1)
        found += [f"{name}/{sub}" for sub in below or ()]
    return found


def _gone_is_fine(function: object, path: str, error: tuple[type[BaseException], BaseException, object]) -> None:
    """``rmtree``: what is already gone (removed by another process meanwhile) is no error, the rest is."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]


class FilesystemWriter(FileWriter):
    """Appends to the file in place: upload data files are never published under a digest directly."""

    def __init__(self, driver: FilesystemDriver, full: str, fd: int, size: int) -> None:
        self._driver = driver
        self._full = full
        self._fd: int | None = fd
        self._size = size
        self._opened_size = size
        self._direct = DirectAppender(driver.stages, full, fd) if driver.stages is not None else None

    @classmethod
    def open(cls, driver: FilesystemDriver, full: str, append: bool) -> FilesystemWriter:
        os.makedirs(os.path.dirname(full), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(full, flags, 0o644)
        return cls(driver, full, fd, os.fstat(fd).st_size if append else 0)

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes | memoryview) -> None:
        await self._driver.run(self._write_sync, [data])

    async def write_parts(self, parts: Sequence[bytes]) -> None:
        await self._driver.run(self._write_sync, parts)

    def _write_sync(self, parts: Sequence[bytes | memoryview]) -> None:
        if self._fd is None:
            raise ValueError("writer is closed")
        if self._direct is not None and self._direct.wanted(parts):
            self._size += self._direct.append(parts, self._size)
            return
        start = self._size
        views = [memoryview(p) for p in parts if len(p)]
        while views:
            written = os.writev(self._fd, views[:IOV_MAX])
            self._size += written
            while views and written >= len(views[0]):  # drop what went out, keep the rest of a short write
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]
        if self._driver.fsync:
            start_writeback(self._fd, start, self._size - start)

    async def commit(self) -> None:
        await self._driver.run(self._finish, self._driver.fsync)

    async def close(self) -> None:
        await self._driver.run(self._finish, False)

    def _finish(self, sync: bool) -> None:
        if self._fd is None:
            return
        try:
            if sync:
                os.fdatasync(self._fd)
        finally:
            if self._direct is not None:
                self._direct.close()
            os.close(self._fd)
            self._fd = None

    async def cancel(self) -> None:
        await self._driver.run(self._cancel_sync)

    async def discard(self) -> None:
        await self._driver.run(self._discard_sync)

    def _discard_sync(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, self._opened_size)
            self._size = self._opened_size
        self._finish(False)

    def _cancel_sync(self) -> None:
        self._finish(False)
        try:
            os.unlink(self._full)
        except FileNotFoundError:
            pass



class FilesystemParameters(Section):
    """``storage.filesystem``."""

    IGNORED = ("maxthreads",)  # Distribution's; the driver sizes its own pool

    rootdirectory: Str = "./data"
    fsync: Bool = True  # fsync data and metadata before acknowledging
    directwrites: Bool = True  # large upload writes bypass the page cache (O_DIRECT) where supported
