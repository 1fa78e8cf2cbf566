"""Bounded calls to a backend that can hang: S3 here; the database layer and LDAP can use it the same way.

A client library that blocks (boto3, a database driver) runs its calls on a thread pool.  A call that
answers within ``slow_after`` seconds is simply awaited.  A slower one is either a slow answer (a big
listing, a large object arriving over a slow link) or a dead endpoint, which only the client's own read
timeout would end, after tens of seconds times its retries.  A probe tells them apart: a tiny request
with a short timeout of its own (``probe`` raises when the endpoint does not answer).  When the probe
fails, the breaker opens and every call waiting on the backend fails at once with StorageUnavailable
(their threads finish in the background); when it answers, slow calls go on for as long as data flows.

Why a probe rather than a short timeout per call or a deadline per request: a timeout short enough to
fail a hung endpoint in seconds also fails a legitimately slow listing or a slow download, and a fixed
deadline cannot tell a 10 GB download from a hang.  The probe bounds a hang by ``slow_after`` plus the
probe's own timeout, whatever the call, and costs one small request per slow period, never per call.

One probe at a time serves every waiter, in any thread or event loop, and its verdict is reused for
``slow_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from storage.breaker import CircuitBreaker
from storage.driver.interface import StorageUnavailable

T = TypeVar("T")
log = logging.getLogger("moorage.storage")


class Guard:
    def __init__(self, name: str, pool: Executor, breaker: CircuitBreaker, probe: Callable[[], None],
                 slow_after: float = 2.0, probe_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``probe`` must bound its own wait by ``probe_timeout`` (a client configured with it)."""
        self.name = name
        self.pool = pool
        self.breaker = breaker
        self.probe = probe
        self.slow_after = slow_after
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._probing: Future[bool] | None = None
        self._verdict: tuple[float, bool] | None = None  # (when, alive)
        # its own thread: the pool may be full of calls stuck on the endpoint
        self._probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the pool; StorageUnavailable at once while the breaker is open, or
        as soon as a probe finds the endpoint dead while the call waits."""
        self.breaker.check()  # before queueing: while the endpoint hangs, the threads all wait on it
        call = asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))
        while True:
            done, _ = await asyncio.wait({call}, timeout=self.slow_after)
            if done:
                return call.result()
            verdict = asyncio.ensure_future(self.alive())
            done, _ = await asyncio.wait({call, verdict}, return_when=asyncio.FIRST_COMPLETED)
            if call in done:  # it answered (or failed by itself) while the probe ran
                verdict.cancel()
                return call.result()
            if not verdict.result():
                call.add_done_callback(_ignore)  # its late outcome is nobody's business now
                raise StorageUnavailable(f"{self.name} does not answer (a probe timed out)",
                                         retry_after=max(1.0, self.breaker.cooldown),
                                         reason=f"{self.name} does not answer")

    async def alive(self) -> bool:
        """Whether the endpoint answers a probe (a verdict at most ``slow_after`` seconds old)."""
        with self._lock:
            if self._verdict is not None and self._clock() - self._verdict[0] < self.slow_after:
                return self._verdict[1]
            if self._probing is None:
                self._probing = self._probe_pool.submit(self._probe_once)
            probing = self._probing
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(probing)), self.probe_timeout)
        except TimeoutError:  # the probe's own timeout did not end it in time (a starved machine): dead too
            self._judge(False, f"no answer within {self.probe_timeout:g}s")
            return False

    def _probe_once(self) -> bool:
        try:
            self.probe()
        except Exception as e:  # noqa: BLE001 - whatever stops the probe means no answer
            self._judge(False, str(e))
            return False
        self._judge(True)
        return True

    def _judge(self, alive: bool, why: str = "") -> None:
        with self._lock:
            self._verdict = (self._clock(), alive)
            self._probing = None
        if not alive:
            if not self.breaker.is_open:
                log.warning("%s: no answer to a probe (%s): failing fast for %gs", self.name, why,
                            self.breaker.cooldown)
            self.breaker.trip()

    def close(self) -> None:
        self._probe_pool.shutdown(wait=False)


def _ignore(future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        future.exception()
