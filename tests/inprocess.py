"""An ASGI app served by uvicorn in a thread of the test process, on a loopback port: real HTTP for real
clients (the docker daemon, httpx), with the app's objects still reachable by the test."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp

from tests.e2e.helpers import free_port
from tests.loopback import Listening


@dataclass
class InProcessServer(Listening):
    """``stop()`` and ``start()`` it to simulate outages."""

    app: ASGIApp
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def another_port(self) -> int:
        return free_port()

    def start(self) -> InProcessServer:
        """Serve on ``port``; when another run took it meanwhile (and it was never ours), on another."""
        for _ in range(5):
            config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                    lifespan="on", timeout_graceful_shutdown=2)
            self.server = uvicorn.Server(config)
            self.thread = threading.Thread(target=self.server.run, daemon=True)
            self.thread.start()
            deadline = time.monotonic() + 10
            while not self.server.started and self.thread.is_alive():
                assert time.monotonic() < deadline, f"server on {self.port} did not start"
                time.sleep(0.01)
            if self.server.started:
                return self
            self.port = self.another_port()
        raise RuntimeError("could not start a server on a free port")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.server = self.thread = None
