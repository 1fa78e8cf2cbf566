"""Blob payloads: one shared random buffer (repeated past 512 MiB); each push gets a unique 32-byte tail,
digest precomputed."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator

TAIL = 32
_TILE = 16 << 20
_BASE_MAX = 512 << 20  # larger blobs repeat the buffer: a 2 GiB push costs the client 512 MiB, not 2 GiB


class Payloads:
    """Blobs of the given sizes: ``base`` repeated up to ``size - 32``, then the tail; the prefix hash is
    computed once per size."""

    def __init__(self, sizes: list[int], token: str) -> None:
        top = min(max(sizes), _BASE_MAX)
        tile = os.urandom(min(top, _TILE))
        buf = bytearray(top)
        for off in range(0, top, len(tile)):
            n = min(len(tile), top - off)
            buf[off : off + n] = tile[:n]
        self.base = memoryview(buf)
        self.token = token.encode()[:16]
        self.counter = itertools.count()
        self.prefix: dict[int, hashlib._Hash] = {}
        h = hashlib.sha256()
        done = 0
        for size in sorted(set(sizes)):
            end = size - TAIL
            for view in self._span(done, end):
                h.update(view)
            done = end
            self.prefix[size] = h.copy()

    def new(self, size: int) -> tuple[bytes, str]:
        """A fresh (tail, digest) for one push of ``size`` bytes."""
        n = next(self.counter)
        tail = (self.token + f"-{n:015d}".encode()).ljust(TAIL, b"#")[:TAIL]
        h = self.prefix[size].copy()
        h.update(tail)
        return tail, "sha256:" + h.hexdigest()

    def pieces(
        self, size: int, tail: bytes, start: int = 0, end: int | None = None
    ) -> Iterator[memoryview | bytes]:
        """Zero-copy views of bytes [start, end) of the blob."""
        end = size if end is None else end
        cut = size - TAIL
        if start < cut:
            yield from self._span(start, min(end, cut))
        if end > cut:
            yield tail[max(start, cut) - cut : end - cut]

    def _span(self, start: int, end: int) -> Iterator[memoryview]:
        """Views of bytes [start, end) of ``base`` repeated without end."""
        n = len(self.base)
        while start < end:
            offset = start % n
            take = min(end - start, n - offset)
            yield self.base[offset : offset + take]
            start += take

    def content(self, size: int, tail: bytes) -> bytes:
        """The whole blob as bytes (for small verification only)."""
        return b"".join(bytes(p) for p in self.pieces(size, tail))
