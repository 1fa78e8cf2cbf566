"""The ASGI application: /v2 dispatch, access control, the spec's errors and headers on every answer."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import random
from typing import TYPE_CHECKING
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from auth.base import Access, AuthFailure
from auth.factory import token_server_routes
from auth.policy import MAX_AGE, PolicySnapshot
from registry import config as config_module
from registry import offload
from registry.api import v1
from registry.api.replication import ReplicationAPI
from registry.api.search import NewRepositories, V1Search
from registry.api.tokens import TokensAPI
from registry.api.usage import V1Usage
from registry.config import Config
from registry.errors import RegistryError, auth_failure_response, error_response
from registry.events import logs, metrics
from registry.events.audit import AuditTrail
from registry.events.lag import watch_lag
from registry.events.notifications.factory import build_notifier
from registry.events.observe import Observer
from registry.http import allocator
from registry.http.framing import IdleBody, malformed, refuse_body
from registry.http.routes import WRITE_METHODS, match
from registry.http.urls import client_address, origin
from registry.instance import Registry
from registry.maintenance.schedule import collect_periodically
from registry.names import check_name
from registry.ui.content import Inspector
from storage import paths
from storage.accounting import UsageIndex
from storage.background import stop
from storage.database import Cached, DatabaseUnavailable
from storage.driver import PathNotFound, StorageDriver, StorageUnavailable

if TYPE_CHECKING:
    from registry.replication.worker import Replication

log = logging.getLogger("moorage")
API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
STORAGE_CHECK_TIMEOUT = 5.0
SHUTDOWN_WAIT = 10.0  # seconds the background tasks (GC, purging, checks) get to stop
PURGE_FIRST_WITHIN = 3600.0  # seconds: the first upload purge starts at a random moment within them
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
FILESYSTEM_RETRY_AFTER = 10.0


METRICS_ACCESS = [Access("registry", "metrics", "*")]


class RegistryApp:
    def __init__(self, config: Config, registry: Registry, extra_routes: list[BaseRoute],
                 replication: Replication | None = None) -> None:
        self.config = config
        self.registry = registry
        self.replication = replication
        self.prefix = config.http.prefix
        self.api_prefix = f"{self.prefix}v2"
        # on every /v2 answer: the API version and the operator's http.headers
        self.version_headers = [API_VERSION_HEADER,
                                *((k.lower().encode(), v.encode()) for k, v in config.http.header_pairs)]
        routes = [
            *extra_routes,
            Route("/livez", self.liveness, methods=["GET", "HEAD"]),
            Route("/healthz", self.readiness, methods=["GET", "HEAD"]),
            Route("/readyz", self.readiness, methods=["GET", "HEAD"]),
        ]
        if config.http.metrics.enabled:
            routes.append(Route(config.http.metrics.path, self.metrics, methods=["GET"]))
        self.other = Router(routes=routes, default=self.not_found)
        self.notifier = build_notifier(config, registry.driver)
        if replication is not None:
            for consumer in replication.consumers():
                registry.events.subscribe(consumer)
            if self.notifier is not None:
                replication.alert = self.notifier.publish
        audit = AuditTrail(config.audit_path)
        registry.events.subscribe(audit)
        if registry.tokens is not None:
            registry.tokens.listeners.append(audit.changed)
        if self.notifier is not None:
            registry.events.subscribe(self.notifier)
        if config.metrics_enabled:
            registry.events.subscribe(metrics.ContentMetrics())
        self.observer = Observer(config, routes, [audit], registry.events)
        # the periodic jobs (upload purge, scheduled GC, notifications, replication) run here; with forked
        # workers only the first one runs them (registry.http.server)
        self.background = True
        # uvicorn's protocol bounds the wait for a request body's pieces itself (registry.http.protocol)
        self.body_timeout = config.http.bodytimeout if config.http.server == "granian" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            error = malformed(scope)
            if error is not None:
                await self.observer(scope, receive, send, error_response(error))
                return
            if self.body_timeout is not None:
                receive = IdleBody(receive, self.body_timeout)
            app = self.api if scope["path"].startswith(self.api_prefix) else self.other
            await self.observer(scope, receive, send, app)
        else:
            await self.other(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        tasks: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                storage = self.config.storage
                tasks.append(asyncio.create_task(self.check_storage()))
                if self.background and storage.upload_purge_enabled and not storage.readonly:
                    tasks.append(asyncio.create_task(self.purge_periodically()))
                if self.background and storage.gc.enabled and not storage.readonly:
                    tasks.append(asyncio.create_task(collect_periodically(self.registry)))
                if self.background and self.notifier is not None:
                    self.notifier.start()
                if self.registry.database is not None:
                    self.registry.database.feed.start()  # only if a cache follows it (auth.database)
                if self.background and self.replication is not None and not storage.readonly:
                    self.replication.start()
                tasks.append(asyncio.create_task(watch_lag(record=self.config.metrics_enabled)))
                if self.registry.policy is not None:
                    await prime(self.registry.policy)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # together, each bounded: a task stuck in a storage call must not hold up the shutdown
                await asyncio.gather(*(stop(task, SHUTDOWN_WAIT) for task in tasks))
                if self.replication is not None:
                    await self.replication.close()
                if self.notifier is not None:
                    await self.notifier.close()
                await self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def check_storage(self) -> None:
        """Say at start-up when the storage does not answer (a bucket that does not exist yet, wrong keys):
        the registry serves anyway, answering 503 that names the problem until it is fixed, as a registry
        started by compose before its bucket exists must."""
        error = await storage_error(self.registry.driver)
        if error is not None:
            log.error("storage unavailable at start-up: %s; answering 503 (and /readyz failing) until it "
                      "answers", error)

    async def purge_periodically(self) -> None:
        """Distribution's upload purging, and as Distribution does, first after a random delay of up to
        an hour: uploads abandoned for days are not urgent, replicas restarted together then do not all
        walk the storage at once, and a start does not pay for a walk of every repository."""
        storage = self.config.storage
        await asyncio.sleep(random.uniform(0, min(PURGE_FIRST_WITHIN, storage.upload_purge_interval)))
        while True:
            try:
                await self.registry.writer.purge_uploads(storage.upload_purge_age, storage.upload_purge_dryrun)
            except StorageUnavailable as e:  # said once per request already: no traceback every round
                log.warning("purging abandoned uploads skipped: %s", e.reason or e)
            except Exception:
                log.exception("purging abandoned uploads failed")
            await asyncio.sleep(storage.upload_purge_interval)

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["moorage.registry"] = self.registry
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except RegistryError as e:
            response = error_response(e)
        except AuthFailure as e:
            response = auth_failure_response(e)
            await refuse_body(request, response)
        except ClientDisconnect:
            return
        except DatabaseUnavailable as e:
            log.warning("database unavailable on %s %s: %s", scope["method"], scope["path"], e)
            response = error_response(unavailable(e.retry_after, what="database"))
        except StorageUnavailable as e:
            log.warning("storage unavailable on %s %s: %s", scope["method"], scope["path"], e)
            response = error_response(unavailable(e.retry_after, e.reason))
        except OSError as e:
            if e.errno not in FULL:
                log.exception("storage error on %s %s", scope["method"], scope["path"])
            response = error_response(storage_failure(e))
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(RegistryError("UNKNOWN", "internal server error"))
        response.raw_headers += self.version_headers  # Starlette's responses and BlobResponse alike
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        scope = request.scope
        found = match(raw_path(scope)[len(self.prefix) :])
        if found is None:
            raise RegistryError("UNSUPPORTED", "no such endpoint", status=404)
        endpoint, raw_params = found
        # a name is taken as sent: none of its characters needs an escape, and t%2Fa must not be t/a
        params = {key: value if key == "name" else unquote(value) for key, value in raw_params.items()}
        scope["moorage.route"] = endpoint.route
        method = scope["method"]
        entry = endpoint.methods.get(method)
        if entry is None:
            raise RegistryError("UNSUPPORTED", f"method {method} not allowed here",
                                headers={"Allow": ", ".join(endpoint.methods)})
        if endpoint.named:
            check_name(params["name"])
        if endpoint.named:
            repository = self.registry.repository(params["name"], request.query_params.get("ns"))
            if method in WRITE_METHODS:  # refused before the body is read and before authorization
                self.registry.writer.check_writable(repository.name)
            params["name"] = repository.name
            scope["moorage.repository"] = repository
        handler, rule = entry
        scope["path_params"] = params
        scope["moorage.wanted"] = wanted = rule(request)
        scope["moorage.grant"] = await self.registry.access.authorize(
            request.headers, wanted, lambda: origin(request, self.config.http),
            client_address(request, self.config.http))
        return await handler(request)

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Paths outside /v2 that nothing serves: the registry's error format, as everywhere else."""
        await error_response(RegistryError("UNSUPPORTED", "no such endpoint", status=404))(scope, receive, send)

    async def metrics(self, request: Request) -> Response:
        """``http.metrics``: /metrics on the main address, for admins or whom ``auth.access.metrics`` names."""
        try:
            await self.registry.access.authorize(request.headers, METRICS_ACCESS,
                                                 lambda: origin(request, self.config.http),
                                                 client_address(request, self.config.http))
        except AuthFailure as e:
            return auth_failure_response(e)
        body, content_type = metrics.exposition()
        return Response(body, headers={"Content-Type": content_type})

    async def liveness(self, request: Request) -> Response:
        """``/livez``: the process answers; storage is not consulted (an outage must not restart it)."""
        return JSONResponse({"status": "ok"})

    async def readiness(self, request: Request) -> Response:
        """``/healthz`` and ``/readyz``: healthy and ready to serve only while the storage answers."""
        error = await storage_error(self.registry.driver)
        if error:
            return JSONResponse({"status": "unavailable", "storage": error}, status_code=503)
        return JSONResponse({"status": "ok"})


async def prime(policy: Cached[PolicySnapshot]) -> None:
    """Load the access policy before the first request (the migrations run then too); a database that is
    down now is waited for by the requests that need it, not by the start."""
    try:
        await policy.fresh(MAX_AGE)
    except DatabaseUnavailable as e:
        log.warning("access policy not loaded at start (%s): requests that need it answer 503 until it is", e)


def raw_path(scope: Scope) -> str:
    """The path as sent, escapes kept: routed before decoding, an encoded ``/`` stays inside its
    segment (``blobs/sha256%2F...`` is a malformed digest, not another endpoint)."""
    raw = scope.get("raw_path")
    if not raw:
        return scope["path"]
    return raw.decode("latin-1").split("?", 1)[0]


async def storage_error(driver: StorageDriver, timeout: float = STORAGE_CHECK_TIMEOUT) -> str | None:
    """None when the storage answers a stat of the registry root in time, else why not."""
    try:
        await asyncio.wait_for(driver.stat(paths.ROOT), timeout)
    except PathNotFound:
        return None  # an empty registry is healthy
    except TimeoutError:
        return f"storage did not answer within {timeout:g}s"
    except StorageUnavailable as e:
        return e.reason or str(e)
    except Exception as e:  # noqa: BLE001 - any storage failure makes us unready
        return str(e) or type(e).__name__
    return None


def storage_failure(error: OSError) -> RegistryError:
    """A full disk is the operator's to fix: say so (507).  Any other error of the local storage (EIO,
    a read-only remount, a vanished NFS mount) is an outage: 503, the client may retry later."""
    if error.errno in FULL:
        return RegistryError("UNKNOWN", "no space left on the registry's storage", status=507)
    return unavailable(FILESYSTEM_RETRY_AFTER)


def unavailable(retry_after: float, reason: str | None = None, what: str = "storage") -> RegistryError:
    seconds = str(max(1, math.ceil(retry_after)))
    message = f"the registry's {what} is unavailable, retry later" + (f": {reason}" if reason else "")
    return RegistryError("UNAVAILABLE", message, headers={"Retry-After": seconds})


def build_replication(registry: Registry) -> Replication | None:
    """The replication rules' workers; None without rules, and then the HTTP client they use to reach
    other registries is never imported."""
    if registry.config.replication.replication() is None:
        return None
    from registry.replication.worker import Replication

    return Replication.build(registry)


def create_app(config: Config, registry: Registry | None = None) -> RegistryApp:
    if registry is None:
        registry = Registry.build(config)
    extra = token_server_routes(config.auth, lambda request: client_address(request, config.http),
                                registry.login.credentials, registry.policy)
    inspector = Inspector(registry)
    replication = build_replication(registry)
    usage = UsageIndex(registry.driver, offload.run)
    extra += V1Search(registry, inspector.description).routes()
    registry.events.subscribe(NewRepositories(registry.catalog))
    extra += V1Usage(registry, usage).routes()
    extra += TokensAPI(registry, registry.tokens).routes()
    extra += ReplicationAPI(registry, replication).routes()
    extra += v1.routes(registry)
    if config.ui.enabled:
        from registry.ui.app import WebUI  # Jinja2 and the templates only when the UI is on

        extra += WebUI(registry, inspector, usage, replication).routes()
    return RegistryApp(config, registry, extra, replication)


def app_from_environment() -> RegistryApp:
    """Factory for ASGI servers that import the app (several workers): config path in MOORAGE_CONFIG."""
    allocator.tune()
    config = config_module.load(os.environ.get("MOORAGE_CONFIG") or None)
    logs.configure(config)  # a worker process: its logs in the configured format too
    return create_app(config)
