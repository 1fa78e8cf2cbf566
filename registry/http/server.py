"""Runs the app under an ASGI server, uvicorn (default) or granian, with Distribution's http.* keys.

* ``http.tls``: served TLS; ``clientcas`` makes it mutual TLS (a client certificate signed by one
  of them is required); ``minimumtls`` is the lowest protocol version accepted.
* ``http.debug.addr``: a second listener (plain HTTP, keep it private) with Distribution's
  ``/debug/health`` and, with ``http.debug.prometheus.enabled``, the metrics (``path``, default
  ``/metrics``), served from a thread of the main process whatever the server.  When the app runs in
  other processes (``http.workers`` > 1, or granian) the workers share their metrics through
  ``PROMETHEUS_MULTIPROC_DIR`` (see ``registry.events.metrics``).
* Logs: the app's per-request event is the access log; the servers' own access logs are off.
* ``http.draintimeout``: on SIGTERM the listener closes at once, requests in flight (uploads) get
  this long to finish, then they are cut and the process exits.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ipaddress
import logging
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.supervisors import Multiprocess

from configkit import ENV_PREFIX
from registry.config import Config, ConfigError, TLSConfig
from registry.events import metrics
from registry.http import allocator
from registry.http.app import create_app, storage_error
from registry.http.head_limits import HeadLimits, LimitedHttpToolsProtocol
from storage.driver.factory import build_driver

log = logging.getLogger("moorage")

TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}
APP_FACTORY = "registry.http.app:app_from_environment"
LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")
HYPER_MIN_BUFFER = 8192  # hyper refuses a smaller HTTP/1 read buffer
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


def split_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (an empty host means every IPv4 address)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(config: Config, source: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain; blocks. ``source``: the config file, for the start-up line."""
    host, port = split_addr(config.http.addr)
    allocator.tune()  # this process serves when there is one worker; workers tune themselves
    log.info("%s", startup_line(config, source))
    warn_plain_http_credentials(config, host)
    if config.http.workers > 1 and config.ui.secret is None:
        # workers load the config themselves: one random session key for all, or a login works on one only
        os.environ["REGISTRY_UI_SECRET"] = secrets.token_urlsafe(32)
    scratch = multiprocess_metrics(config)
    debug = DebugServer(config) if config.http.debug_addr else None
    if debug:
        debug.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, exit_quietly)
    try:
        if config.http.server == "granian":
            serve_granian(config, host, port)
        else:
            serve_uvicorn(config, host, port)
    finally:
        if debug:
            debug.stop()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def multiprocess_metrics(config: Config) -> str | None:
    """Point the workers at a clean ``PROMETHEUS_MULTIPROC_DIR`` when the app runs in worker processes.

    Returns the directory when it was created here (removed at exit). Workers must import
    prometheus-client afresh to see it: uvicorn spawns them; granian is told to spawn, not fork.
    """
    if not config.metrics_enabled or (config.http.workers == 1 and config.http.server == "uvicorn"):
        return None
    given = os.environ.get(metrics.MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):  # samples of an earlier run would be added up
            stale.unlink()
        return None
    scratch = tempfile.mkdtemp(prefix="moorage-metrics-")
    os.environ[metrics.MULTIPROC_ENV] = scratch
    return scratch


def startup_line(config: Config, source: str | None) -> str:
    """What this process serves, in one line: version, URLs, storage, auth mode, config file."""
    try:
        version = importlib.metadata.version("moorage")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    http = config.http
    urls = [listen_url("https" if http.tls.certificate else "http", http.addr, http.prefix)]
    if http.debug_addr:
        urls.append(f"debug {listen_url('http', http.debug_addr, '/')}")
    storage = config.storage
    if storage.s3 is not None:
        where = f"s3://{storage.s3.bucket}/{storage.s3.rootdirectory.strip('/')}"
        if storage.s3.regionendpoint:
            where += f" at {storage.s3.endpoint_url}"
    else:
        where = os.path.abspath(storage.parameters.rootdirectory)
    mirror = config.proxy.mirror()
    extra = f", mirror of {', '.join(u.url for u in mirror.upstreams)}" if mirror else ""
    return (f"moorage {version} serving {' and '.join(urls)}; storage {storage.driver} {where}; "
            f"auth {config.auth.mode}{extra}; config {source or 'none (defaults)'}"
            f"{'' if not env_overrides() else ' + ' + ', '.join(env_overrides())}")


def listen_url(scheme: str, addr: str, prefix: str) -> str:
    host, port = split_addr(addr)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{prefix}"


def env_overrides() -> list[str]:
    return sorted(name for name in os.environ if name.startswith(ENV_PREFIX))


def exit_quietly(_signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT before the server installs its own handlers, or re-raised by uvicorn once it has
    drained (it restores this handler first): a clean exit, status 0."""
    raise SystemExit(0)


# ------------------------------------------------------------------------------------------- uvicorn


def serve_uvicorn(config: Config, host: str, port: int) -> None:
    http = config.http
    options: dict[str, object] = {}
    if http.tls.certificate:
        options.update(
            ssl_certfile=http.tls.certificate,
            ssl_keyfile=http.tls.key,
            ssl_context_factory=functools.partial(uvicorn_ssl_context, http.tls),
        )
    common: dict[str, Any] = dict(
        host=host,
        port=port,
        access_log=False,  # the app logs each request itself (registry.events.observe)
        log_config=None,  # keep the handlers of registry.events.logs
        log_level=config.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=math.ceil(http.draintimeout),
        http=LimitedHttpToolsProtocol,
        **options,
    )
    limits = HeadLimits(http.maxheadersize, http.maxheaders, http.headertimeout)
    if http.workers > 1:
        workers = uvicorn.Config(APP_FACTORY, factory=True, workers=http.workers, **common)
        workers.moorage_head_limits = limits  # type: ignore[attr-defined]  # pickled into each worker
        DrainingMultiprocess(workers, sockets=[workers.bind_socket()]).run()
    else:
        single = uvicorn.Config(create_app(config), **common)
        single.moorage_head_limits = limits  # type: ignore[attr-defined]
        server = uvicorn.Server(single)
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as uvicorn.run does: the port was taken, the app did not start


class DrainingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, closing its own copy of the listening socket before it stops the
    workers: while they drain, new connections are refused instead of queueing unanswered."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def uvicorn_ssl_context(tls: TLSConfig, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
                        ) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory`` (a module-level partial: pickled into each worker)."""
    return ssl_context(tls)


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The server context of ``http.tls``: certificate chain, minimum version, client CAs (mTLS)."""
    assert tls.certificate and tls.key
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.minimumtls]
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL refuses TLS 1.0/1.1 at its default level
    try:
        context.load_cert_chain(tls.certificate, tls.key)
        for ca in tls.clientcas:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"http.tls: cannot load certificate, key or client CAs: {e}") from e
    if tls.clientcas:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# ------------------------------------------------------------------------------------------- granian


def serve_granian(config: Config, host: str, port: int) -> None:
    """granian runs the app factory in worker processes."""
    try:
        from granian import Granian
        from granian.constants import Interfaces, SSLProtocols
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.log import LogLevels
    except ImportError as e:
        raise ConfigError("http.server: granian is not installed (pip install 'moorage[granian]')") from e
    http = config.http
    options: dict[str, object] = {}
    if config.metrics_enabled:
        multiprocessing.set_start_method("spawn", force=True)  # workers import prometheus-client afresh
    with tempfile.TemporaryDirectory(prefix="moorage-granian-") as scratch:
        if http.tls.certificate:
            ssl_context(http.tls)  # the same errors as under uvicorn, before granian forks
            minimum = http.tls.minimumtls
            if minimum not in ("tls1.2", "tls1.3"):
                log.warning("http.tls.minimumtls %s: granian speaks TLS 1.2 and 1.3 only; using tls1.2",
                            minimum)
                minimum = "tls1.2"
            options.update(
                ssl_cert=Path(http.tls.certificate),
                ssl_key=Path(http.tls.key or ""),
                ssl_protocol_min=SSLProtocols(minimum),
            )
            if http.tls.clientcas:
                options.update(ssl_ca=ca_bundle(http.tls.clientcas, Path(scratch)), ssl_client_verify=True)
        Granian(
            APP_FACTORY,
            factory=True,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=http.workers,
            log_level=LogLevels(config.log_level),
            log_access=False,  # the app logs each request itself (registry.events.observe)
            workers_kill_timeout=max(1, math.ceil(http.draintimeout)),  # 0 would mean: wait forever
            # hyper bounds the head by its read buffer and refuses more than 100 header fields itself
            http1_settings=HTTP1Settings(header_read_timeout=math.ceil(http.headertimeout * 1000),
                                         max_buffer_size=max(http.maxheadersize, HYPER_MIN_BUFFER)),
            http2_settings=HTTP2Settings(max_headers_size=http.maxheadersize),
            **options,
        ).serve()


def ca_bundle(cafiles: list[str], scratch: Path) -> Path:
    """granian takes one CA file: several ``clientcas`` are concatenated into ``scratch``."""
    if len(cafiles) == 1:
        return Path(cafiles[0])
    bundle = scratch / "clientcas.pem"
    bundle.write_text("\n".join(Path(ca).read_text() for ca in cafiles))
    return bundle


# ------------------------------------------------------------------------------------- debug server


class DebugServer:
    """``http.debug.addr``: Distribution's ``/debug/health`` (200 ``{}``, or 503 with the failing
    checks), plus ``/livez``, ``/healthz``, ``/readyz`` and the metrics when enabled, served by uvicorn in a
    thread with its own loop."""

    def __init__(self, config: Config) -> None:
        assert config.http.debug_addr
        host, port = split_addr(config.http.debug_addr)
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


# ------------------------------------------------------------------------------------------ warnings


def warn_plain_http_credentials(config: Config, host: str) -> None:
    """Basic or token auth over plain HTTP reachable from other hosts sends secrets in clear."""
    http = config.http
    if config.auth.mode == "none" or http.tls.certificate:
        return
    if is_loopback(host):
        return
    if http.trustedproxies or (http.host or "").startswith("https://"):
        return  # a TLS-terminating proxy in front is declared
    log.warning(
        "auth (%s) over plain HTTP on %s: passwords and tokens cross the network unencrypted. "
        "Configure http.tls, or put a TLS-terminating proxy in front (http.trustedproxies, "
        "http.host: https://...), or bind to loopback.",
        config.auth.mode,
        config.http.addr,
    )


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything

