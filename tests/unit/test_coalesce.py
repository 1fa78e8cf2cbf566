"""registry.http.coalesce: a response's head leaves with its body's first piece, in order, never left behind."""

from __future__ import annotations

from typing import Any

from registry.http.coalesce import JOIN_BELOW, HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.sends: list[Any] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sends.append(data)

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        self.sends.append(list(pieces))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_head_and_small_body_leave_in_one_send() -> None:
    wire = Recorder()
    transport = HeadWithBody(wire)  # type: ignore[arg-type]
    transport.write(HEAD)
    assert wire.sends == []
    transport.write(b"{}")
    assert wire.sends == [HEAD + b"{}"]


def test_a_large_first_piece_is_gathered_not_copied_and_later_pieces_pass() -> None:
    wire = Recorder()
    transport = HeadWithBody(wire)  # type: ignore[arg-type]
    big = b"x" * JOIN_BELOW
    transport.write(HEAD)
    transport.write(big)
    transport.write(HEAD)  # body bytes that look like a head are body: sent at once
    assert wire.sends == [[HEAD, big], HEAD]


def test_interim_continue_is_sent_at_once() -> None:
    wire = Recorder()
    transport = HeadWithBody(wire)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert wire.sends == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(HEAD)
    transport.write(b"")
    assert wire.sends[1:] == [HEAD]


def test_close_sends_a_held_head_first_and_the_rest_is_the_transports() -> None:
    wire = Recorder()
    transport = HeadWithBody(wire)  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.close()
    assert wire.sends == [HEAD] and wire.closed
    assert transport.is_closing()
