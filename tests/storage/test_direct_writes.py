"""Large upload writes bypass the page cache (storage/driver/direct.py): the bytes on disk are exactly the
bytes appended, whatever the offsets and piece sizes, and a filesystem that refuses O_DIRECT (or a short
direct write) falls back to buffered writes without losing a byte."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import mmap
import os
import random
from pathlib import Path

import pytest

from storage.driver import direct
from storage.driver.direct import ALIGN, DIRECT_MIN, STAGE, DirectAppender, StagePool
from storage.driver.filesystem import FilesystemDriver

MIB = 1 << 20


def pieces(rng: random.Random, total: int) -> list[bytes]:
    """``total`` random bytes in pieces of uneven sizes (as a socket delivers them)."""
    out, left = [], total
    while left:
        n = min(left, rng.choice([1, 7, 4095, 4097, 65536, 262_144, 300_001]))
        out.append(rng.randbytes(n))
        left -= n
    return out


def append_all(tmp_path: Path, batches: list[list[bytes]], pool: StagePool, start: bytes = b"") -> Path:
    path = tmp_path / "data"
    path.write_bytes(start)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    writer = DirectAppender(pool, str(path), fd)
    offset = len(start)
    try:
        for batch in batches:
            offset += writer.append(batch, offset)
    finally:
        writer.close()
        os.close(fd)
    assert offset == path.stat().st_size
    return path


def appended(tmp_path: Path, batches: list[list[bytes]], pool: StagePool, start: bytes = b"") -> bytes:
    return append_all(tmp_path, batches, pool, start).read_bytes()


def cached_pages(path: Path) -> int:
    """Pages of the file in the page cache now (mincore of a read-only mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = ctypes.create_string_buffer(pages)
        assert libc.mincore(address, size, vector) == 0, ctypes.get_errno()
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vector.raw)


def test_direct_writes_leave_no_pages_in_the_cache(tmp_path: Path) -> None:
    """What the page cache does not hold, no write had to copy into new pages: only the unaligned head and
    tail went through it (on a filesystem that takes O_DIRECT; others are checked by the next tests)."""
    pool = StagePool()
    path = append_all(tmp_path, [pieces(random.Random(0), 2 * STAGE + 100)], pool, b"x" * 10)
    if not pool.supported:
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT: buffered writes are tested below")
    assert cached_pages(path) <= 2


@pytest.mark.parametrize("start", [0, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 17])
def test_bytes_on_disk_are_the_bytes_appended(tmp_path: Path, start: int) -> None:
    rng = random.Random(start)
    head = rng.randbytes(start)
    batches = [pieces(rng, STAGE + 5), pieces(rng, DIRECT_MIN + 3), pieces(rng, 2 * STAGE)]
    assert appended(tmp_path, batches, StagePool(), head) == head + b"".join(b"".join(b) for b in batches)


def test_a_filesystem_refusing_o_direct_gets_buffered_writes(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refusing_open(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct.os, "open", refusing_open)
    pool = StagePool()
    batches = [pieces(random.Random(1), 2 * MIB + 3)]
    assert appended(tmp_path, batches, pool, b"abc") == b"abc" + b"".join(batches[0])
    assert not pool.supported  # decided once: the next writers do not try


def test_a_short_or_refused_direct_write_continues_buffered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwrite = os.pwrite
    calls = {"n": 0}

    def flaky_pwrite(fd, data, offset):  # type: ignore[no-untyped-def]
        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            return real_pwrite(fd, data, offset)  # the buffered head and tail
        calls["n"] += 1
        if calls["n"] == 1:
            return real_pwrite(fd, data[: ALIGN + 100], offset)  # short, and no longer aligned
        if calls["n"] == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(direct.os, "pwrite", flaky_pwrite)
    pool = StagePool()
    batches = [pieces(random.Random(2), 3 * STAGE + 11) for _ in range(2)]
    assert appended(tmp_path, batches, pool) == b"".join(b"".join(b) for b in batches)
    assert calls["n"] >= 2 and not pool.supported


def test_staging_buffers_are_reused_and_bounded() -> None:
    pool = StagePool()
    taken = [pool.take() for _ in range(5)]
    for stage in taken:
        pool.give(stage)
    assert len(pool._idle) == direct.IDLE_STAGES
    assert pool.take() in taken[: direct.IDLE_STAGES]


def test_an_upload_through_the_driver_with_direct_writes(tmp_path: Path) -> None:
    """The filesystem driver's writer: appends of several requests (resumed at unaligned lengths), a small
    one (buffered), a commit; then the data is what was sent."""
    rng = random.Random(3)
    driver = FilesystemDriver(str(tmp_path), directwrites=True)
    sent = b""

    async def run() -> None:
        nonlocal sent
        for total in (DIRECT_MIN + 1, 100, 2 * STAGE + 4097, 5 * MIB):
            writer = await driver.writer("/uploads/x/data", append=True)
            batch = pieces(rng, total)
            await writer.write_parts(batch)
            sent += b"".join(batch)
            await writer.commit()
        await driver.close()

    asyncio.run(run())
    assert (tmp_path / "uploads" / "x" / "data").read_bytes() == sent
