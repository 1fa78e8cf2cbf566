"""Protocol edges against a real `moorage serve`, under uvicorn and granian (issue 24, items 14 and 15):
request bodies that stop arriving, `Expect: 100-continue` before authorization, malformed requests.
Without login: these are what anyone who can connect may send."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import bcrypt
import pytest

pytestmark = pytest.mark.e2e

BODY_TIMEOUT = 2.0
GIB = 1 << 30


def htpasswd(path: Path) -> Path:
    path.write_text(f"alice:{bcrypt.hashpw(b'alice-pw', bcrypt.gensalt(4)).decode()}\n")
    return path


@pytest.fixture(params=["uvicorn", "granian"])
def server(request: pytest.FixtureRequest, start_moorage, tmp_path: Path):  # type: ignore[no-untyped-def]
    return start_moorage({
        "http": {"server": request.param, "bodytimeout": f"{BODY_TIMEOUT:g}s"},
        "auth": {"htpasswd": {"realm": "moorage", "path": str(htpasswd(tmp_path / "htpasswd"))},
                 "access": {"rules": [{"repositories": ["**"], "who": ["anonymous"], "actions": ["pull"]},
                                      {"repositories": ["**"], "who": ["authenticated"], "actions": ["*"]}]}},
    })


def connect(server) -> socket.socket:  # type: ignore[no-untyped-def]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_answer(sock: socket.socket, wait: float = 10.0) -> tuple[bytes, bool]:
    """What the server sent until it closed (True) or ``wait`` seconds passed without a byte (False)."""
    sock.settimeout(wait)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        pass
    return data, True


def basic() -> str:
    return "Basic " + base64.b64encode(b"alice:alice-pw").decode()


def open_fds(pid: int) -> int:
    """File descriptors of the server: the supervisor and its workers."""
    total = 0
    for p in [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        total += len(os.listdir(f"/proc/{p}/fd"))
    return total


# --- item 14: bodies that stop arriving, 100-continue before authorization ----------------------------


def test_a_request_body_that_stops_arriving_is_cut(server) -> None:  # type: ignore[no-untyped-def]
    """40 PATCHes that send one byte of a declared 1,000 and then nothing: each connection is closed within
    the body timeout plus slack, and the server's file descriptors come back to what they were."""
    with server.http(headers={"Authorization": basic()}) as c:
        locations = [c.post("/v2/slow/app/blobs/uploads/").headers["Location"] for _ in range(40)]
    assert server.proc is not None
    idle_fds = open_fds(server.proc.pid)
    socks = []
    for location in locations:
        sock = connect(server)
        path = location.split(str(server.port), 1)[1]
        sock.sendall(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nA".encode())
        socks.append(sock)
    started = time.monotonic()
    for sock in socks:
        _, closed = read_answer(sock, wait=max(0.1, started + BODY_TIMEOUT + 8 - time.monotonic()))
        assert closed, f"still open {time.monotonic() - started:.1f}s after the last byte"
        sock.close()
    deadline = time.monotonic() + 10
    while open_fds(server.proc.pid) > idle_fds + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(server.proc.pid) <= idle_fds + 5, (open_fds(server.proc.pid), idle_fds)


def test_a_slow_but_steady_body_is_not_cut(server) -> None:  # type: ignore[no-untyped-def]
    """A byte every second for five seconds (the timeout is 2 s of silence, not a total): 202."""
    with server.http(headers={"Authorization": basic()}) as c:
        location = c.post("/v2/slow/app/blobs/uploads/").headers["Location"]
    with connect(server) as sock:
        path = location.split(str(server.port), 1)[1]
        sock.sendall(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
                     "Content-Length: 5\r\nConnection: close\r\n\r\n".encode())
        for _ in range(5):
            time.sleep(1.0)
            sock.sendall(b"B")
        answer, _ = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


def test_expect_continue_is_not_answered_before_authorization(server) -> None:  # type: ignore[no-untyped-def]
    """An anonymous push announcing 1 GiB with `Expect: 100-continue` gets its 401 at once, never a
    "100 Continue" that would make it send the gigabyte; the connection is closed after it."""
    with connect(server) as sock:
        sock.sendall(f"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\n"
                     "Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n\r\n".encode())
        answer, closed = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"100 Continue" not in answer
    assert closed, "the connection stays open with a body the client was told not to send"


def test_expect_continue_after_authorization_still_works(server) -> None:  # type: ignore[no-untyped-def]
    body = b"x" * 100_000
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with connect(server) as sock:
        sock.sendall(f"POST /v2/team/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: {basic()}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                     "Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n\r\n".encode())
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 100"), first
        sock.sendall(body)
        answer, _ = read_answer(sock)
    assert b"HTTP/1.1 201" in first + answer, (first + answer)[:300]


def test_an_anonymous_body_is_not_read_to_its_end_before_the_401(server) -> None:  # type: ignore[no-untyped-def]
    """Without `Expect`, a refused request's body is read up to a small bound (so that a small one gets a
    clean answer), not to its end: the 401 comes while the client still has most of 64 MiB to send."""
    with connect(server) as sock:
        sock.sendall(f"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: {64 << 20}\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode())
        sock.settimeout(10)
        sent = 0
        chunk = b"z" * 65536
        answer = b""
        while sent < (64 << 20):
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.setblocking(False)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        if not answer:
            answer, _ = read_answer(sock, 5)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < (16 << 20), f"{sent} bytes taken before the answer"


# --- item 15: malformed requests ------------------------------------------------------------------------


def test_a_host_less_http_1_1_request_is_refused_in_json(server) -> None:  # type: ignore[no-untyped-def]
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\n\r\n")
        answer, _ = read_answer(sock, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"


def test_an_http_2_request_line_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    """`HTTP/2.0` on an HTTP/1 connection: 505 in JSON under uvicorn; granian's parser (hyper) refuses it
    itself with an empty 400 before the app sees it."""
    with connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/2.0\r\nHost: x\r\n\r\n")
        answer, closed = read_answer(sock, 5)
    assert closed
    if server.config["http"]["server"] == "granian":
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        return
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 505"), answer[:300]
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"


def test_an_unparsable_request_gets_a_json_400(server) -> None:  # type: ignore[no-untyped-def]
    """uvicorn's parser errors answer in the registry's format; granian's (hyper) answer an empty 400."""
    with connect(server) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        answer, closed = read_answer(sock, 5)
    assert closed and answer.startswith(b"HTTP/1.1 400"), answer[:300]
    if server.config["http"]["server"] == "granian":
        return
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNSUPPORTED" and error["message"] == "invalid HTTP request"
