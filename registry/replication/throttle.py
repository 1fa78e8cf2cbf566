"""A rule's bandwidth limit: every transfer of its executions takes its bytes from one budget of ``rate``
bytes per second, so parallel blobs share the limit instead of each getting it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

BURST = 0.25  # seconds of the rate that may go at once (a piece is sent whole)


class Throttle:
    def __init__(self, rate: int) -> None:
        self.rate = rate  # bytes per second; 0: unlimited
        self._free_at = 0.0  # monotonic time when the budget has caught up with what was taken

    async def take(self, size: int) -> None:
        """Wait until ``size`` more bytes keep the average within the rate."""
        if not self.rate:
            return
        now = time.monotonic()
        self._free_at = max(self._free_at, now) + size / self.rate
        delay = self._free_at - now - BURST
        if delay > 0:
            await asyncio.sleep(delay)

    async def limit(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self.take(len(chunk))
            yield chunk
