"""``http.debug.addr``: a second listener, plain HTTP (keep it private), served by uvicorn in a thread with
its own loop: Distribution's ``/debug/health`` (200 ``{}``, or 503 with the failing checks), ``/livez``,
``/healthz``, ``/readyz`` and, with ``http.debug.prometheus.enabled``, the metrics of every worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry.config import Config, ConfigError
from registry.events import metrics
from registry.http.app import storage_error
from storage.driver.factory import build_driver

log = logging.getLogger("moorage")


class DebugServer:
    """The debug listener of ``config`` (see the module's docstring)."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self.config = config
        self.server = uvicorn.Server(
            uvicorn.Config(self.app(), host=host, port=port, log_config=None, access_log=False,
                           lifespan="on", server_header=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="moorage-debug", daemon=True)

    def app(self) -> Starlette:
        storage = self.config.storage
        check_name = f"storagedriver_{storage.driver}"
        drivers = []

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            drivers.append(build_driver(storage.driver, storage.parameters,
                                        redirect=not storage.redirect_disabled))
            yield
            await drivers[0].close()

        async def health(_request: Request) -> Response:
            error = await storage_error(drivers[0])
            return JSONResponse({check_name: error} if error else {}, status_code=503 if error else 200)

        async def readiness(_request: Request) -> Response:
            error = await storage_error(drivers[0])
            body = {"status": "unavailable", "storage": error} if error else {"status": "ok"}
            return JSONResponse(body, status_code=503 if error else 200)

        async def liveness(_request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def prometheus(_request: Request) -> Response:
            body, content_type = metrics.exposition()
            return Response(body, headers={"Content-Type": content_type})

        routes = [
            Route("/debug/health", health, methods=["GET", "HEAD"]),
            Route("/livez", liveness, methods=["GET", "HEAD"]),
            Route("/healthz", readiness, methods=["GET", "HEAD"]),
            Route("/readyz", readiness, methods=["GET", "HEAD"]),
        ]
        if self.config.http.debug_prometheus:
            routes.append(Route(self.config.http.debug_prometheus_path, prometheus, methods=["GET"]))
        return Starlette(routes=routes, lifespan=lifespan)

    def start(self) -> None:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.02)
        if not self.server.started:
            raise ConfigError(f"http.debug.addr: cannot listen on {self.config.http.debug_addr}")
        extra = f", {self.config.http.debug_prometheus_path}" if self.config.http.debug_prometheus else ""
        log.info("debug server on http://%s (/debug/health%s)", self.config.http.debug_addr, extra)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
