"""The brute-force brake: wrong passwords for one user from one address are slowed down.

Keyed on (user, client address), so a guesser is held back without locking out the colleagues behind
the same NAT (other users) or the user from anywhere else.  Only failures count: after ``attempts``
failures in a row, each further try must wait ``delay`` seconds, doubling with every failure up to
``maxdelay``; a success resets the count, and so do ``window`` seconds without a failure.  While a key
is braked its passwords are not even checked (the caller answers 429 with Retry-After), so guessing
cannot continue behind the refusals, and no bcrypt is spent on it.

The state lives in this process's memory, at most ``entries`` keys (the least recently failed are
forgotten first): each replica, and each worker process, brakes on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auth.settings import BrakeSettings


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginBrake:
    def __init__(self, attempts: int = 5, delay: float = 1.0, maxdelay: float = 300.0, window: float = 900.0,
                 entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.delay = delay
        self.maxdelay = maxdelay
        self.window = window
        self.entries = entries
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def wait(self, user: str, address: str) -> float:
        """Seconds before ``user`` may try a password from ``address`` again; 0 when it may now."""
        with self._lock:
            entry = self._failures.get((user, address))
            if entry is None:
                return 0.0
            now = self._clock()
            if now - entry.last > self.window:
                del self._failures[(user, address)]
                return 0.0
            if entry.count < self.attempts:
                return 0.0
            backoff = min(self.maxdelay, self.delay * 2 ** (entry.count - self.attempts))
            return max(0.0, entry.last + backoff - now)

    def failed(self, user: str, address: str) -> None:
        key = (user, address)
        with self._lock:
            now = self._clock()
            entry = self._failures.pop(key, None)
            if entry is None or now - entry.last > self.window:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._failures[key] = entry  # most recent last: the oldest go first when full
            while len(self._failures) > self.entries:
                self._failures.popitem(last=False)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._failures.pop((user, address), None)


def build_brake(settings: BrakeSettings | Mapping[str, Any] | None) -> LoginBrake | None:
    """From the ``auth.brake`` settings (on by default); None when ``enabled: false``."""
    brake = BrakeSettings.parse(settings, "auth.brake")
    if not brake.enabled:
        return None
    return LoginBrake(attempts=brake.attempts, delay=brake.delay, maxdelay=brake.maxdelay, window=brake.window,
                      entries=brake.entries)


class TooManyAttempts(Exception):
    """The key is braked: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins, retry in {retry_after:.0f}s")
        self.retry_after = retry_after


def retry_after(error: TooManyAttempts | float) -> dict[str, str]:
    """The Retry-After header for a braked login (or a number of seconds)."""
    seconds = error.retry_after if isinstance(error, TooManyAttempts) else error
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
