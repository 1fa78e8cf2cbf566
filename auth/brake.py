"""The brute-force brake: wrong passwords for one user from one address are slowed down.

Keyed on (user, client address), so a guesser is held back without locking out the colleagues behind
the same NAT (other users) or the user from anywhere else.  Only failures count: after ``attempts``
failures in a row, each further try must wait ``delay`` seconds, doubling with every failure up to
``maxdelay``; a success resets the count, and so do ``window`` seconds without a failure.  While a key
is braked its passwords are not even checked (the caller answers 429 with Retry-After), so guessing
cannot continue behind the refusals, and no bcrypt is spent on it.

The state lives in this process's memory, at most ``entries`` keys (the least recently failed are
forgotten first).  When the registry has a database the brake shares its counts there (``share``,
with ``auth/shared_failures.py``):
each failure is also counted in the database, in the background, and the count that answers (every
replica's and worker's failures of that user from that address) becomes this process's, so a guesser
spreading guesses over N replicas gains at most one guess per replica, not N times the allowance.  A
success here clears the shared count too.  While the database is unreachable each process brakes on
its own, as without one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.settings import BrakeSettings

if TYPE_CHECKING:
    from auth.shared_failures import SharedFailures

log = logging.getLogger("moorage.auth")


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
        self._shared: SharedFailures | None = None
        self._sharing: set[asyncio.Task[None]] = set()  # writes to the shared count in flight

    def share(self, shared: SharedFailures) -> None:
        """Count failures in ``shared`` too (the database every replica uses)."""
        self._shared = shared

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
        if self._shared is not None:
            self._in_background(self._count_shared(self._shared, user, address))

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            known = self._failures.pop((user, address), None) is not None
        if known and self._shared is not None:  # a success with nothing counted here costs no write
            self._in_background(self._shared.forget(user, address))

    async def settled(self) -> None:
        """Until the shared writes made so far are done (tests, shutdown)."""
        while self._sharing:
            await asyncio.gather(*self._sharing, return_exceptions=True)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no event loop (a command-line tool): this process's count only
            work.close()
            return
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    async def _count_shared(self, shared: SharedFailures, user: str, address: str) -> None:
        count = await shared.failed(user, address, self.window)
        if count is None:
            return
        with self._lock:
            entry = self._failures.get((user, address))
            if entry is not None and count > entry.count:
                entry.count = count  # the other replicas' failures count here from now on


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
