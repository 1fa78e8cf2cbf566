"""Runs the app under an ASGI server, uvicorn (default) or granian, with Distribution's http.* keys.

* ``http.workers`` (default ``auto``: one per CPU): under uvicorn, one process serves when there is one;
  with more, a supervisor builds the app and forks that many workers (``registry.http.workers``).
  granian always runs the app in worker processes of its own.
* ``http.tls``: served TLS; ``clientcas`` makes it mutual TLS (a client certificate signed by one
  of them is required); ``minimumtls`` is the lowest protocol version accepted.
* ``http.debug.addr``: a second listener (``registry.http.debug``), in the serving process or the first
  worker. When the app runs in several processes they share their metrics through prometheus-client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, see ``registry.events.metrics``), which must be chosen
  before any metric holds a value: the app is imported here only after that choice.
* Logs: the app's per-request event is the access log; the servers' own access logs are off.
* ``http.draintimeout``: on SIGTERM the listener closes at once, requests in flight (uploads) get
  this long to finish, then they are cut and the process exits.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import ipaddress
import logging
import math
import os
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from configkit import ENV_PREFIX
from registry.config import AutoWorkers, Config, ConfigError, TLSConfig
from registry.http import allocator
from registry.http.protocol import Limits, RegistryHttpProtocol
from registry.http.workers import STARTUP_FAILURE, Supervisor, check_free, listening_socket

if TYPE_CHECKING:
    from registry.http.app import RegistryApp

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
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's


def split_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (an empty host means every IPv4 address)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(config: Config, source: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain; blocks. ``source``: the config file, for the start-up line."""
    host, port = split_addr(config.http.addr)
    allocator.tune()  # before the app is built: forked workers inherit the settings
    log.info("%s", startup_line(config, source))
    if isinstance(config.http.workers, AutoWorkers) and config.one_process_reason:
        log.info("http.workers auto: one process, as %s (set http.workers to override)",
                 config.one_process_reason)
    warn_plain_http_credentials(config, host)
    scratch = multiprocess_metrics(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, exit_quietly)
    try:
        if config.http.server == "granian":
            serve_granian(config, host, port)
        else:
            serve_uvicorn(config, host, port)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def in_processes(config: Config) -> bool:
    """Whether the app runs in several processes (or, under granian, in processes of its own)."""
    return config.http.server == "granian" or config.http.workers > 1


def multiprocess_metrics(config: Config) -> str | None:
    """Point every process at a clean ``PROMETHEUS_MULTIPROC_DIR`` when the app runs in worker processes.

    Returns the directory when it was created here (removed at exit). prometheus-client chooses how to
    keep a value when the value is made: from its import on, by the variable, or by ``values.ValueClass``
    (its own hook for this), which is set here when the config's modules imported it already. Their
    metrics all have labels, so they hold no value until their first ``labels()``; the HTTP layer's
    (``registry.events.metrics``, with gauges of their own) must not be imported yet.
    """
    if not config.metrics_enabled or not in_processes(config):
        return None
    if "registry.events.metrics" in sys.modules:
        raise RuntimeError("registry.events.metrics was imported before the metrics of several workers were set up")
    given = os.environ.get(MULTIPROC_ENV)
    scratch = None
    if given:
        for stale in Path(given).glob("*.db"):  # samples of an earlier run would be added up
            stale.unlink()
    else:
        scratch = tempfile.mkdtemp(prefix="moorage-metrics-")
        os.environ[MULTIPROC_ENV] = scratch
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return scratch


@contextlib.contextmanager
def debug_listener(config: Config) -> Iterator[None]:
    """``http.debug.addr``, served from a thread of this process while the block runs."""
    if not config.http.debug_addr:
        yield
        return
    from registry.http.debug import DebugServer

    debug = DebugServer(config, *split_addr(config.http.debug_addr))
    debug.start()
    try:
        yield
    finally:
        debug.stop()


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
    from registry.http.app import create_app  # after multiprocess_metrics (see the module's docstring)

    http = config.http
    if http.workers > 1:
        try:
            check_free(host, port)
        except OSError as e:
            log.error("cannot listen on %s: %s", http.addr, e)
            sys.exit(STARTUP_FAILURE)
    app = create_app(config)
    server_config = uvicorn.Config(app, **uvicorn_options(config, host, port))
    server_config.moorage_limits = Limits(  # type: ignore[attr-defined]
        http.maxheadersize, http.maxheaders, http.headertimeout, http.bodytimeout)
    if http.workers == 1:
        with debug_listener(config):
            server = uvicorn.Server(server_config)
            server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as uvicorn.run does: the port was taken, the app did not start
        return
    server_config.load()  # protocol classes and the TLS context: imported and built once, shared
    worker = functools.partial(uvicorn_worker, config, server_config, app, host, port)
    status = Supervisor(http.workers, worker, http.draintimeout, on_exit=metrics_of_dead_worker(config)).run()
    if status:
        sys.exit(status)


def uvicorn_options(config: Config, host: str, port: int) -> dict[str, Any]:
    http = config.http
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        access_log=False,  # the app logs each request itself (registry.events.observe)
        log_config=None,  # keep the handlers of registry.events.logs
        log_level=config.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=math.ceil(http.draintimeout),
        http=RegistryHttpProtocol,
        ws="none",
    )
    if http.tls.certificate:
        options.update(
            ssl_certfile=http.tls.certificate,
            ssl_keyfile=http.tls.key,
            ssl_context_factory=functools.partial(uvicorn_ssl_context, http.tls),
        )
    return options


class ListeningServer(uvicorn.Server):
    """uvicorn's server, calling ``ready`` once it listens (the supervisor then knows the worker started)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready()


def uvicorn_worker(config: Config, server_config: uvicorn.Config, app: RegistryApp, host: str, port: int,
                   index: int, ready: Callable[[], None]) -> int:
    """One forked worker: its own listening socket; the first one also runs the background jobs and
    the debug listener."""
    sock = listening_socket(host, port)
    app.background = index == 0
    with debug_listener(config) if index == 0 else contextlib.nullcontext():
        server = ListeningServer(server_config, ready)
        server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def metrics_of_dead_worker(config: Config) -> Callable[[int], None]:
    """What to do when a worker is gone: its live gauges (requests in flight) no longer count."""
    if not config.metrics_enabled:
        return lambda pid: None
    from prometheus_client import multiprocess

    return lambda pid: multiprocess.mark_process_dead(pid)


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
    """granian runs the app factory in worker processes, which it forks from this one: the app's modules
    are imported here first, so that the workers share them. Every worker runs the background jobs (the
    leases in storage let one collect garbage or deliver to an endpoint at a time)."""
    try:
        from granian import Granian
        from granian.constants import Interfaces, SSLProtocols
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.log import LogLevels
    except ImportError as e:
        raise ConfigError("http.server: granian is not installed (pip install 'moorage[granian]')") from e
    import registry.http.app  # noqa: F401 - after multiprocess_metrics; shared by the forked workers

    http = config.http
    options: dict[str, object] = {}
    if config.ui.secret is None:
        # each worker builds its own app: one random session key for all, or a login works on one only
        os.environ["REGISTRY_UI_SECRET"] = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="moorage-granian-") as scratch, debug_listener(config):
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

