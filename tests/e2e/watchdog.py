"""The event-loop lag watchdog: while an attack runs, other clients must still be answered promptly.

``LoopWatchdog`` sends ``GET /v2/`` from its own threads (so the attack's clients in the test process do
not delay it), each on a fresh connection (so that with several worker processes the probes reach each
of them), and remembers how long each took.  A server whose event loop is held by one request answers
nobody else meanwhile: the probes sent then wait as long.

    with LoopWatchdog(server.url) as watchdog:
        ...the attack...
    watchdog.check()        # every probe answered within MAX_WAIT
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import httpx

MAX_WAIT = 1.0  # issue 24: a concurrent GET /v2/ never waits longer than this
PROBE_INTERVAL = 0.05
PROBERS = 2  # probes in flight at once: one stalled probe does not hide the next stall


class LoopWatchdog:
    def __init__(self, url: str, max_wait: float = MAX_WAIT) -> None:
        self.url = url.rstrip("/") + "/v2/"
        self.max_wait = max_wait
        self.waits: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe, name=f"watchdog-{i}", daemon=True)
                         for i in range(PROBERS)]

    def __enter__(self) -> LoopWatchdog:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _probe(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection, maybe another worker, each time
        with httpx.Client(timeout=120, limits=limits) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                    if status not in (200, 401):
                        self.failures.append(f"GET /v2/ answered {status}")
                except httpx.HTTPError as e:
                    self.failures.append(f"GET /v2/ failed: {e!r}")
                self.waits.append(time.monotonic() - started)
                self._stop.wait(PROBE_INTERVAL)

    @property
    def worst(self) -> float:
        return max(self.waits, default=0.0)

    def summary(self) -> str:
        ordered = sorted(self.waits)
        median = ordered[len(ordered) // 2] if ordered else 0.0
        return f"{len(ordered)} probes, median {median * 1000:.0f} ms, worst {self.worst * 1000:.0f} ms"

    def check(self) -> None:
        """Fail unless probes ran and every one was answered within ``max_wait``."""
        assert len(self.waits) >= 2 * PROBERS, f"the watchdog hardly probed: {self.summary()}"
        assert not self.failures, self.failures[:5]
        slow = [round(w, 2) for w in self.waits if w > self.max_wait]
        assert not slow, f"GET /v2/ waited longer than {self.max_wait} s during the attack: {self.summary()}; " \
                         f"slow probes (s): {slow[:20]}"
