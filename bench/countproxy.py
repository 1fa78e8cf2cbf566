"""A TCP proxy that counts the bytes each way, in front of the destination registry of a copy benchmark:
what a replicator *sent* is what reached the registry, whatever the tool reports.

Bytes move with ``os.splice`` (socket -> pipe -> socket in the kernel), one thread per direction and
connection, so counting 2 GB costs the bench process almost no CPU beside the tools it measures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

CHUNK = 1 << 20


class CountingProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0  # client -> registry (requests and their bodies)
        self.received = 0  # registry -> client
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.upstream[0]}:{self.port}"

    @property
    def host(self) -> str:
        return f"{self.upstream[0]}:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = self.connections = 0

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._open |= {client, server}
            done = threading.Barrier(2, action=lambda c=client, s=server: self._forget(c, s))
            threading.Thread(target=self._pump, args=(client, server, True, done), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False, done), daemon=True).start()

    def _forget(self, *sockets: socket.socket) -> None:
        """Both directions ended: close the pair."""
        with self._lock:
            self._open -= set(sockets)
        for sock in sockets:
            sock.close()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool, done: threading.Barrier) -> None:
        read_end, write_end = os.pipe()
        try:
            while True:
                moved = os.splice(source.fileno(), write_end, CHUNK)
                if moved == 0:
                    break
                with self._lock:
                    if upstream:
                        self.sent += moved
                    else:
                        self.received += moved
                while moved:
                    moved -= os.splice(read_end, target.fileno(), moved)
        except OSError:
            pass
        finally:
            os.close(read_end)
            os.close(write_end)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait()
