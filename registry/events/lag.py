"""The event loop's lag: a task asks to wake every ``INTERVAL`` and measures how late it woke.

One request that holds the loop (a CPU-heavy step run inline, a blocking call) delays every other
request of the process by as long; this is where that shows: ``moorage_event_loop_lag_seconds`` in
/metrics, and a warning in the log when the loop was held for ``WARN_AFTER`` or more.  Each worker
process measures its own loop (their samples add up in the multiprocess metrics).  Cost: four wake-ups
a second.
"""

from __future__ import annotations

import asyncio
import logging

from registry.events import metrics

log = logging.getLogger("moorage")
INTERVAL = 0.25
WARN_AFTER = 1.0
WARN_EVERY = 60.0  # at most one warning a minute: a stalled server must not also flood its log


async def watch_lag(interval: float = INTERVAL, record: bool = True) -> None:
    """Runs until cancelled; ``record``: feed the metrics (off when they are disabled)."""
    loop = asyncio.get_running_loop()
    warned = -WARN_EVERY
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        now = loop.time()
        lag = max(0.0, now - due)
        if record:
            metrics.event_loop_lag.observe(lag)
            metrics.event_loop_lag_last.set(lag)
        if lag >= WARN_AFTER and now - warned >= WARN_EVERY:
            warned = now
            log.warning("the event loop was held for %.1f s: no request of this process was answered meanwhile "
                        "(see moorage_event_loop_lag_seconds)", lag)
