"""CPU-heavy steps of a request (parsing a large manifest, pretty-printing it, rendering a page) run on a
small thread pool, so the event loop keeps answering everyone else meanwhile; long loops that must stay
on the event loop (they await) give it a turn now and then (``paced``).

The threads share the GIL with the loop, but the interpreter hands it over every switch interval
(5 ms): a 300 ms parse of a 4 MiB manifest then delays another request by milliseconds, not by 300 ms.
Two threads: more would only take more turns from the loop (and hold more large documents at once).
Small inputs stay inline, where a thread hop (~50 µs) would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
INLINE_BYTES = 64 << 10  # JSON of this size parses in well under a millisecond
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cpu")


async def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on the pool."""
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


async def sized(size: int, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``, which works through ``size`` bytes: inline when that is little, else on the pool."""
    if size <= INLINE_BYTES:
        return fn(*args)
    return await run(fn, *args)


async def paced(items: Iterable[T], every: int = 256) -> AsyncIterator[T]:
    """``items``, giving the event loop a turn after every ``every`` of them: a loop over thousands of
    names that awaits only calls which answer at once would otherwise never let another request in."""
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            await asyncio.sleep(0)
