"""Large upload writes that bypass the page cache (``O_DIRECT``), as far as the filesystem allows.

A buffered ``write`` copies the bytes into page-cache pages, and new pages are fresh memory: on a VM whose
free memory the balloon hands back to the host (free page reporting), touching each one again costs the
host a fault and a zeroed page. Measured here (2 vCPU Firecracker VM, ext4, ``python -m bench writes``):
writing 512 MiB files that stay on disk cost 1.1-2.1 CPU-s per GB in buffered writes of 32 KiB to 4 MiB,
from Python and from Go alike, once the memory of the previous files had a few seconds to go back to the
host (0.35-0.6 for 32 KiB writes right after a delete: the order of runs decided earlier comparisons with
Distribution v3, whose pushes pay the same cost); ``O_DIRECT`` writes from a reused buffer cost 0.05-0.07,
0.18-0.19 with the copy into that buffer: they touch no new page at all.

``O_DIRECT`` wants the buffer, the file offset and the length aligned to the device's block: the received
pieces are copied into a page-aligned staging buffer (one copy, as the page cache's), written in aligned
blocks through a second descriptor, and what does not fill a block (the first bytes up to a block boundary,
the last ones after the final boundary) goes through the ordinary descriptor. A filesystem that refuses
``O_DIRECT`` (tmpfs before Linux 6.6, some FUSE file systems) gets buffered writes, decided once per driver.
Durability is unchanged: the writer's fdatasync still comes before a blob is published, and covers the
buffered pieces and the metadata of the direct ones.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections.abc import Sequence

log = logging.getLogger("moorage.storage")

ALIGN = 4096  # a multiple of every common logical block size (512, 4096)
STAGE = 4 << 20  # one direct write; upload batches are ~4 MiB (storage.uploads.BATCH_SIZE)
DIRECT_MIN = 1 << 20  # smaller writes stay buffered: one staging copy would not pay for itself
IDLE_STAGES = 2  # staging buffers kept for the next writes; more are unmapped after use
REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP})


class StagePool:
    """Page-aligned staging buffers, reused: fresh memory is what direct writes avoid."""

    def __init__(self) -> None:
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self.supported = True  # until the filesystem refuses O_DIRECT once

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return mmap.mmap(-1, STAGE)

    def give(self, stage: mmap.mmap) -> None:
        with self._lock:
            if len(self._idle) < IDLE_STAGES:
                self._idle.append(stage)
                return
        stage.close()

    def refused(self, path: str, error: OSError) -> None:
        if self.supported:
            log.info("direct writes refused on %s (%s): buffered writes from now on", path, error)
        self.supported = False


class DirectAppender:
    """Appends to one open file through an ``O_DIRECT`` descriptor of its own (see the module's docstring).

    ``append`` returns the bytes written (all of them) and leaves the file's length where it was plus those.
    """

    def __init__(self, pool: StagePool, path: str, fd: int) -> None:
        self._pool = pool
        self._path = path
        self._fd = fd  # the ordinary descriptor: unaligned heads and tails
        self._direct: int | None = None

    def wanted(self, parts: Sequence[bytes | memoryview]) -> bool:
        return self._pool.supported and sum(len(p) for p in parts) >= DIRECT_MIN

    def append(self, parts: Sequence[bytes | memoryview], offset: int) -> int:
        if self._direct is None:
            try:
                self._direct = os.open(self._path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError as e:
                if e.errno not in REFUSED:
                    raise
                self._pool.refused(self._path, e)
                written = self._buffered(parts, offset)
                os.lseek(self._fd, offset + written, os.SEEK_SET)
                return written
        stage = self._pool.take()
        try:
            written = self._staged(parts, offset, stage)
        finally:
            self._pool.give(stage)
        os.lseek(self._fd, offset + written, os.SEEK_SET)  # the ordinary descriptor goes on from the end
        return written

    def _staged(self, parts: Sequence[bytes | memoryview], offset: int, stage: mmap.mmap) -> int:
        view = memoryview(stage)
        start, fill = offset, 0
        try:
            for part in parts:
                piece = memoryview(part)
                if offset % ALIGN and not fill:  # up to the next block boundary: buffered
                    head = piece[: ALIGN - offset % ALIGN]
                    offset += self._write_all(self._fd, head, offset)
                    piece = piece[len(head):]
                while piece:
                    n = min(len(piece), STAGE - fill)
                    view[fill : fill + n] = piece[:n]
                    fill += n
                    piece = piece[n:]
                    if fill == STAGE:
                        offset += self._flush(view, STAGE, offset)
                        fill = 0
            if fill:
                aligned = fill - fill % ALIGN
                if aligned:
                    offset += self._flush(view, aligned, offset)
                if fill > aligned:
                    offset += self._write_all(self._fd, view[aligned:fill], offset)
        finally:
            view.release()
        return offset - start

    def _flush(self, view: memoryview, length: int, offset: int) -> int:
        """Write ``view[:length]`` at ``offset`` directly; buffered if the filesystem refuses."""
        done = 0
        while done < length:
            if self._direct is None:  # refused earlier in this append
                return done + self._write_all(self._fd, view[done:length], offset + done)
            try:
                done += os.pwrite(self._direct, view[done:length], offset + done)
            except OSError as e:
                if e.errno not in REFUSED:
                    raise
                self._pool.refused(self._path, e)
                self.close()
                return done + self._write_all(self._fd, view[done:length], offset + done)
            if done % ALIGN:  # a short write that broke the alignment: the rest goes buffered
                return done + self._write_all(self._fd, view[done:length], offset + done)
        return done

    def _buffered(self, parts: Sequence[bytes | memoryview], offset: int) -> int:
        start = offset
        for part in parts:
            offset += self._write_all(self._fd, memoryview(part), offset)
        return offset - start

    @staticmethod
    def _write_all(fd: int, data: memoryview, offset: int) -> int:
        """``data`` at ``offset`` (pwrite: the descriptor's own position lags behind the direct writes)."""
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], offset + written)
        return written

    def close(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None
