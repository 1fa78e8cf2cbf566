"""A trivial HTTP server (``python -m bench.sink PORT``) with fixed replies: the load client's ceiling."""

from __future__ import annotations

import asyncio
import sys

RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :] if n else data
        if n:
            self.t.write(RESP * n)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await asyncio.sleep(600)  # bounded: the bench stops it long before


def main() -> None:
    try:
        import uvloop

        uvloop.run(_serve(int(sys.argv[1])))
    except ImportError:
        asyncio.run(_serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
