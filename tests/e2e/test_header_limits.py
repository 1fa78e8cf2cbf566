"""Request heads are capped in size and count, and slow ones time out, under uvicorn and granian, against
a real `moorage serve` (issue 14, defect 3).  Without login: these are attacks before any credential."""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.e2e

TIMEOUT = 2.0
LIMITS = {"maxheadersize": 16384, "maxheaders": 50, "headertimeout": f"{TIMEOUT:g}s"}


@pytest.fixture(params=["uvicorn", "granian"])
def server(request: pytest.FixtureRequest, start_moorage):  # type: ignore[no-untyped-def]
    return start_moorage({"http": {"server": request.param, **LIMITS}})


def connect(server) -> socket.socket:  # type: ignore[no-untyped-def]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def status_of(sock: socket.socket) -> int | None:
    """The response's status code; None when the server closed or reset without answering."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    if not data.startswith(b"HTTP/"):
        return None
    return int(data.split(b" ", 2)[1])


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes; it may refuse and close half-way (that is the point)."""
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_normal_request_with_a_large_token_still_works(server) -> None:  # type: ignore[no-untyped-def]
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"t" * 8000
                     + b"\r\nConnection: close\r\n\r\n")
        assert status_of(sock) == 200


def test_oversized_header_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    with connect(server) as sock:
        send_all(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n")
        assert status_of(sock) in (None, 400, 431)


def test_too_many_headers_are_refused(server) -> None:  # type: ignore[no-untyped-def]
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    with connect(server) as sock:
        send_all(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert status_of(sock) in (None, 400, 431)


def test_slow_headers_time_out(server) -> None:  # type: ignore[no-untyped-def]
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert closed_within(sock, TIMEOUT + 8), "a connection with unfinished headers stayed open"
        assert time.monotonic() - started >= TIMEOUT * 0.5


def test_silent_connection_times_out(start_moorage) -> None:  # type: ignore[no-untyped-def]
    """uvicorn only: granian (hyper) starts its header timer at the first byte and offers no idle timeout
    for a connection that never sends one; such a connection holds a descriptor, no memory."""
    server = start_moorage({"http": {"server": "uvicorn", **LIMITS}})
    with connect(server) as sock:
        assert closed_within(sock, TIMEOUT + 8), "a connection that sent nothing stayed open"


def test_server_keeps_serving_after_the_attacks(server) -> None:  # type: ignore[no-untyped-def]
    attackers = [connect(server) for _ in range(6)]
    for sock in attackers:
        send_all(sock, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(sock) == 200
    for sock in attackers:
        sock.close()
