"""Stopping a background task on shutdown, within a bound.

A single ``task.cancel()`` then ``await task`` can wait forever: on Python 3.11 ``asyncio.wait_for``
returns a result that completes together with the cancellation and drops the cancellation, so a
polling loop (the database's change feed, a delivery loop) carries on and its closer never returns.
The cancel is therefore repeated while waiting, and the wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("moorage")
RECANCEL_INTERVAL = 0.1


async def stop(task: asyncio.Task[object], grace: float = 10.0) -> bool:
    """Cancel ``task`` until it ends, at most ``grace`` seconds; True when it ended (its error, if
    any, is logged: the caller is shutting down and has no use for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("background task %s did not stop within %gs of its cancellation", task.get_name(), grace)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(RECANCEL_INTERVAL, remaining))
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        if error is not None:
            log.warning("background task %s ended with %r", task.get_name(), error)
    return True
