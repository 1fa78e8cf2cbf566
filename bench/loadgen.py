"""Request-rate load generator: N keep-alive connections on one asyncio (uvloop) loop, raw HTTP/1.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

try:
    import uvloop

    _LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    _LOOP_FACTORY = None

# make(i) -> (raw request bytes, is HEAD)
MakeRequest = Callable[[int], tuple[bytes, bool]]


def raw_request(method: str, target: str, host: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> bytes:
    """Encode one HTTP/1.1 request."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("PUT", "POST", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    done: int
    wall: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # unexpected statuses + broken connections

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies:
            return 0.0
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


class _Proto(asyncio.Protocol):
    """One connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[int] | None = None
        self.head = False
        self.hdr_end = -1
        self.need = -1  # body bytes still expected; -2 = chunked
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection closed"))

    def send(self, req: bytes, head: bool) -> asyncio.Future[int]:
        assert self.transport is not None
        self.fut = asyncio.get_running_loop().create_future()
        self.head = head
        self.hdr_end = -1
        self.transport.write(req)
        return self.fut

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.hdr_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.hdr_end = end + 4
            self.status = int(self.buf[9:12])
            hdr = bytes(self.buf[:end]).lower()
            if self.head or self.status in (204, 304):
                self.need = 0
            elif (i := hdr.find(b"\r\ncontent-length:")) >= 0:
                j = hdr.find(b"\r\n", i + 2)
                self.need = int(hdr[i + 17 : j if j >= 0 else None])
            elif b"transfer-encoding: chunked" in hdr:
                self.need = -2
            else:
                self.need = 0
        if self.need == -2:
            if not self.buf.endswith(b"\r\n0\r\n\r\n"):
                return
            consumed = len(self.buf)
        else:
            consumed = self.hdr_end + self.need
            if len(self.buf) < consumed:
                return
        del self.buf[:consumed]
        if self.fut is not None and not self.fut.done():
            self.fut.set_result(self.status)


async def _run(host: str, port: int, conc: int, make: MakeRequest, total: int | None, seconds: float | None,
               expect: tuple[int, ...]) -> LoadResult:
    loop = asyncio.get_running_loop()
    conns = [await loop.create_connection(_Proto, host, port) for _ in range(conc)]
    counter = itertools.count()
    res = LoadResult(0, 0.0)
    limit = total if total is not None else 1 << 62
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else float("inf")

    async def worker(slot: int) -> None:
        transport, proto = conns[slot]
        while True:
            i = next(counter)
            if i >= limit or time.perf_counter() >= deadline:
                break
            req, head = make(i)
            t0 = time.perf_counter()
            try:
                status = await proto.send(req, head)
            except ConnectionError:
                res.errors += 1
                transport, proto = await loop.create_connection(_Proto, host, port)
                continue
            res.latencies.append(time.perf_counter() - t0)
            res.statuses[status] += 1
            res.done += 1
            if expect and status not in expect:
                res.errors += 1
        transport.close()

    await asyncio.gather(*(worker(s) for s in range(conc)))
    res.wall = time.perf_counter() - start
    return res


def run_load(host: str, port: int, conc: int, make: MakeRequest, *, total: int | None = None,
             seconds: float | None = None, expect: tuple[int, ...] = ()) -> LoadResult:
    """Run ``make(i)`` requests on ``conc`` connections until ``total`` are done or ``seconds`` pass."""
    if total is None and seconds is None:
        raise ValueError("give total or seconds")
    with asyncio.Runner(loop_factory=_LOOP_FACTORY) as runner:
        return runner.run(_run(host, port, conc, make, total, seconds, expect))
