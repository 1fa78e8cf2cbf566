"""A lean blocking HTTP/1.1 client for throughput: large buffers, bodies streamed from memoryviews."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

RECV_BUF = 4 << 20


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    length: int  # body bytes received (also when discarded)


class HTTPError(RuntimeError):
    """Unexpected status or broken connection."""


def target_of(location: str) -> str:
    """Path + query of a Location header (absolute or relative)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(target: str, **params: str) -> str:
    return target + ("&" if "?" in target else "?") + urlencode(params)


class Conn:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.scratch = memoryview(bytearray(RECV_BUF))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf.clear()

    def _connect(self) -> socket.socket:
        if self.sock is not None and not self.buf:
            # an idle keep-alive connection that the server has closed is readable and reads as EOF
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                try:
                    if self.sock.recv(1, socket.MSG_PEEK) == b"":
                        self.close()
                except OSError:
                    self.close()
        if self.sock is None:
            s = socket.create_connection(self.addr, timeout=300)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = s
        return self.sock

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: Iterable[memoryview | bytes] = (),
        length: int = 0,
        discard: bool = False,
        expect: tuple[int, ...] = (),
        sink: Callable[[memoryview], object] | None = None,
    ) -> Response:
        """Send one request (body pieces totalling ``length``) and read the response.

        With ``discard`` a Content-Length body is not kept; ``sink`` (e.g. a hash's ``update``) still sees
        every byte of it."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.addr[0]}:{self.addr[1]}"]
        hdrs = dict(headers or {})
        if method in ("POST", "PUT", "PATCH") or length:
            hdrs.setdefault("Content-Length", str(length))
        head += [f"{k}: {v}" for k, v in hdrs.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode()
        for attempt in (0, 1):
            sock = self._connect()
            try:
                sock.sendall(raw)
                break
            except OSError:
                self.close()
                if attempt:
                    raise
        for piece in body:
            sock.sendall(piece)
        resp = self._read(method == "HEAD", discard, sink)
        if expect and resp.status not in expect:
            raise HTTPError(f"{method} {target}: {resp.status} {resp.body[:300]!r}")
        return resp

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            self.close()
            raise HTTPError("connection closed by server")
        self.buf += data

    def _read(self, is_head: bool, discard: bool, sink: Callable[[memoryview], object] | None = None) -> Response:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body, n = b"", 0
        if is_head or status in (204, 304) or 100 <= status < 200:
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
            n = len(body)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body = self._read_exact(n, discard, sink)
        else:  # read to close
            while self.sock is not None:
                try:
                    self._fill()
                except HTTPError:
                    break
            body, n = bytes(self.buf), len(self.buf)
            self.buf.clear()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body, n)

    def _read_exact(self, n: int, discard: bool, sink: Callable[[memoryview], object] | None = None) -> bytes:
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            if discard and sink is not None:
                sink(memoryview(out))
            return b"" if discard else out
        if not discard:
            while len(self.buf) < n:
                self._fill()
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        left = n - len(self.buf)
        if sink is not None:
            sink(memoryview(bytes(self.buf)))
        self.buf.clear()
        assert self.sock is not None
        while left:
            got = self.sock.recv_into(self.scratch, min(left, RECV_BUF))
            if not got:
                self.close()
                raise HTTPError(f"connection closed with {left} body bytes missing")
            if sink is not None:
                sink(self.scratch[:got])
            left -= got
        return b""

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
            del self.buf[: eol + 2]
            if size == 0:
                while (eol := self.buf.find(b"\r\n")) < 0:
                    self._fill()
                del self.buf[: eol + 2]  # final CRLF (no trailers expected)
                return bytes(out)
            out += self._read_exact(size, False)
            self._read_exact(2, False)
