"""A TCP proxy in front of an S3 endpoint whose misbehaviour a test switches at will.

Modes: ``pass`` (forward), ``refuse`` (the port stops listening: connections are refused), ``hang``
(accept, read, never answer), ``slow`` (forward, each response chunk held ``delay`` seconds), ``500``
and ``503`` (answer every request with that status and an S3 error body).  A mode applies to new
connections; switching also cuts the connections in flight, as an endpoint that goes down would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

MODES = ("pass", "refuse", "hang", "slow", "500", "503")
S3_ERROR = {
    "500": (b"500 Internal Server Error", b"InternalError"),
    "503": (b"503 Service Unavailable", b"ServiceUnavailable"),
}


class FaultProxy:
    def __init__(self, upstream: str, delay: float = 2.0) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").rpartition(":")
        self.upstream = (host, int(port))
        self.delay = delay
        self.mode = "pass"
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._stopped = False
        self._listen()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            self.mode = mode
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if mode == "refuse" and self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._listener.close()
            self._listener = None
        elif mode != "refuse" and self._listener is None:
            self._listen()

    def stop(self) -> None:
        self._stopped = True
        self.set("refuse")

    # --- internals -----------------------------------------------------------------------------------

    def _listen(self) -> None:
        for _ in range(50):  # the port may linger briefly after a close
            try:
                listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port} again")
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: mode "refuse"
            with self._lock:
                self._connections.add(client)
                mode = self.mode
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == "hang":
                while client.recv(65536):
                    pass
            elif mode in S3_ERROR:
                self._answer_error(client, *S3_ERROR[mode])
            else:
                self._forward(client, mode == "slow")
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(client)
            client.close()

    @staticmethod
    def _answer_error(client: socket.socket, status: bytes, code: bytes) -> None:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    return
                head += data
            headers, _, rest = head.partition(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            remaining = length - len(rest)
            while remaining > 0:
                data = client.recv(min(remaining, 65536))
                if not data:
                    return
                remaining -= len(data)
            body = b"<?xml version=\"1.0\"?><Error><Code>" + code + b"</Code><Message>injected</Message></Error>"
            client.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _forward(self, client: socket.socket, slow: bool) -> None:
        upstream = socket.create_connection(self.upstream, timeout=30)
        with self._lock:
            self._connections.add(upstream)

        def pump(source: socket.socket, target: socket.socket, delay: float) -> None:
            try:
                while data := source.recv(65536):
                    if delay:
                        time.sleep(delay)
                    target.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client, self.delay if slow else 0), daemon=True)
        back.start()
        pump(client, upstream, 0)
        back.join()
        with self._lock:
            self._connections.discard(upstream)
        upstream.close()
