"""A circuit breaker for a storage backend that can go away (S3): fail fast while it is down.

Without it every request waits out the backend's timeouts and retries, and holds a thread meanwhile;
with it, after ``threshold`` consecutive failures requests are refused at once for ``cooldown``
seconds, then one trial request is let through: its success closes the breaker, its failure opens it
again.  Thread-safe: outcomes are recorded from the driver's pool threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from storage.driver.interface import StorageUnavailable

PROBE_RETRY_AFTER = 1.0  # while the trial request runs, others may come back this soon


class CircuitBreaker:
    def __init__(self, name: str, threshold: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def check(self) -> None:
        """Raise StorageUnavailable while the breaker is open; lets one trial through per cooldown."""
        if self._open_until is None or self.threshold <= 0:
            return
        with self._lock:
            if self._open_until is None:
                return
            remaining = self._open_until - self._clock()
            if remaining > 0:
                raise StorageUnavailable(f"{self.name} unavailable (failing fast after repeated errors)",
                                         retry_after=remaining, reason=f"{self.name} is unavailable")
            if self._probing:
                raise StorageUnavailable(f"{self.name} unavailable (checking whether it is back)",
                                         retry_after=PROBE_RETRY_AFTER, reason=f"{self.name} is unavailable")
            self._probing = True

    def success(self) -> None:
        if self._failures == 0 and self._open_until is None:
            return
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probing = False

    def trip(self) -> None:
        """Open now: the backend was found dead (a probe), not merely failing."""
        if self.threshold <= 0:
            return
        with self._lock:
            self._failures = max(self._failures, self.threshold)
            self._probing = False
            self._open_until = self._clock() + self.cooldown

    def failure(self) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.threshold:
                self._open_until = self._clock() + self.cooldown
