"""Configuration: one YAML file with Distribution's keys, plus ``REGISTRY_*`` environment overrides.

Sections this module does not interpret itself (``auth``, ``proxy``, storage driver parameters) are
handed on as plain dictionaries to the package that owns them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from registry.quotas import Quotas
    from registry.retention import Retention

ENV_PREFIX = "REGISTRY_"
STORAGE_DRIVERS = ("filesystem", "s3")
FILESYSTEM_KEYS = ("rootdirectory", "maxthreads", "fsync")
STORAGE_SECTIONS = ("delete", "maintenance", "redirect", "cache", "quotas")
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
LOG_FORMATTERS = ("text", "json", "logstash")  # Distribution's; logstash is written as json


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


@dataclass(slots=True)
class TLSConfig:
    certificate: str | None = None
    key: str | None = None
    clientcas: list[str] = field(default_factory=list)
    minimumtls: str = "tls1.2"


@dataclass(slots=True)
class HTTPConfig:
    addr: str = "0.0.0.0:5000"
    host: str | None = None
    prefix: str = "/"
    relativeurls: bool = False
    trustedproxies: list[str] = field(default_factory=list)
    tls: TLSConfig = field(default_factory=TLSConfig)
    debug_addr: str | None = None
    debug_prometheus: bool = False  # http.debug.prometheus.enabled: /metrics on the debug address
    debug_prometheus_path: str = "/metrics"
    metrics: bool = False  # http.metrics.enabled: /metrics on the main address too, behind auth
    metrics_path: str = "/metrics"
    workers: int = 1
    server: str = "uvicorn"
    draintimeout: float = 30.0  # seconds requests in flight get to finish after SIGTERM
    headers: list[tuple[str, str]] = field(default_factory=list)  # added to every /v2 response
    maxheadersize: int = 65536  # bytes of a request's head (request line and headers)
    maxheaders: int = 100  # header fields of a request
    headertimeout: float = 10.0  # seconds for a connection to send a complete request head


@dataclass(slots=True)
class GCConfig:
    """``storage.maintenance.gc``: scheduled online garbage collection (docs/gc.md)."""

    enabled: bool = False
    interval: float = 24 * 3600.0
    grace: float = 3600.0  # what was pushed or relied on this recently is never collected
    deleteuntagged: bool = False
    dryrun: bool = False


@dataclass(slots=True)
class StorageConfig:
    driver: str = "filesystem"
    parameters: dict[str, Any] = field(default_factory=lambda: {"rootdirectory": "./data"})
    delete_enabled: bool = True
    readonly: bool = False
    redirect_disabled: bool = False
    upload_purge_enabled: bool = True
    upload_purge_age: float = 7 * 24 * 3600.0
    upload_purge_interval: float = 24 * 3600.0
    upload_purge_dryrun: bool = False
    gc: GCConfig = field(default_factory=lambda: GCConfig())
    retention: Retention | None = None  # storage.maintenance.retention, applied by GC runs
    quotas: Quotas | None = None  # storage.quotas: byte limits per namespace


@dataclass(slots=True)
class ValidationConfig:
    disabled: bool = False
    # Foreign-layer URL patterns: None allows any http(s) URL (what OCI's conformance suite pushes)
    manifest_urls_allow: list[re.Pattern[str]] | None = None
    manifest_urls_deny: list[re.Pattern[str]] = field(default_factory=list)


@dataclass(slots=True)
class UIConfig:
    enabled: bool = True
    secret: str | None = None  # signs session cookies; random per process when unset
    sessionttl: float = 12 * 3600.0


@dataclass(slots=True)
class Config:
    log_level: str = "info"
    log_formatter: str = "text"
    log_fields: dict[str, str] = field(default_factory=dict)  # added to every log event
    audit_path: str | None = None  # log.audit.path: audit events also appended to this file (JSON lines)
    accesslog: bool = True
    http: HTTPConfig = field(default_factory=HTTPConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    auth: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    notifications: dict[str, Any] = field(default_factory=dict)  # parsed by registry.notifications.config
    source: str | None = None

    @property
    def metrics_enabled(self) -> bool:
        """Whether requests and storage calls are measured: some ``/metrics`` is served."""
        return self.http.debug_prometheus or self.http.metrics


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded
    apply_environment(raw, os.environ if environ is None else environ)
    config = parse(raw)
    config.source = str(path) if path is not None else None
    return config


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x`` sets ``storage.filesystem.rootdirectory``."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("_")
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            value = environ[name]
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value


def parse(raw: Mapping[str, Any]) -> Config:
    config = Config()
    section(raw, "", ("version", "log", "http", "storage", "validation", "auth", "proxy",
                      "notifications", "redis", "health", "reporting", "compatibility", "loglevel", "ui"))
    log = section(raw, "log", ("level", "formatter", "fields", "accesslog", "hooks", "audit"))
    level = choice(log.get("level", raw.get("loglevel", "info")), "log.level", LOG_LEVELS)
    config.log_level = "warning" if level == "warn" else level
    formatter = choice(log.get("formatter", "text"), "log.formatter", LOG_FORMATTERS)
    config.log_formatter = "json" if formatter == "logstash" else formatter
    config.log_fields = {str(k): string(v, f"log.fields.{k}") for k, v in section(log, "log.fields", None).items()}
    audit = section(log, "log.audit", ("path",))
    config.audit_path = string(audit["path"], "log.audit.path") if audit.get("path") else None
    accesslog = section(log, "log.accesslog", ("disabled",))
    config.accesslog = not boolean(accesslog.get("disabled", False), "log.accesslog.disabled")
    config.http = parse_http(section(raw, "http", HTTP_KEYS))
    config.storage = parse_storage(section(raw, "storage", None))
    config.validation = parse_validation(section(raw, "validation", VALIDATION_KEYS))
    config.ui = parse_ui(section(raw, "ui", ("enabled", "secret", "sessionttl")))
    config.auth = dict(section(raw, "auth", None))
    config.proxy = dict(section(raw, "proxy", None))
    config.notifications = dict(section(raw, "notifications", None))
    return config


VALIDATION_KEYS = ("disabled", "enabled", "manifests")
HTTP_KEYS = ("addr", "net", "host", "prefix", "secret", "relativeurls", "draintimeout", "tls", "debug",
             "headers", "http2", "h2c", "trustedproxies", "workers", "server", "metrics", "maxheadersize",
             "maxheaders", "headertimeout")


def parse_http(raw: Mapping[str, Any]) -> HTTPConfig:
    http = HTTPConfig()
    choice(raw.get("net", "tcp"), "http.net", ("tcp",))  # Distribution's unix sockets are not served
    http.headers = parse_headers(section(raw, "http.headers", None))
    http.addr = string(raw.get("addr", http.addr), "http.addr")
    if ":" not in http.addr:
        raise ConfigError(f"http.addr: expected HOST:PORT, got {http.addr!r}")
    host = raw.get("host")
    http.host = string(host, "http.host").rstrip("/") if host else None
    prefix = string(raw.get("prefix", "/"), "http.prefix")
    http.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    http.relativeurls = boolean(raw.get("relativeurls", False), "http.relativeurls")
    http.trustedproxies = string_list(raw.get("trustedproxies", []), "http.trustedproxies")
    http.workers = workers(raw.get("workers", 1), "http.workers")
    http.server = choice(raw.get("server", "uvicorn"), "http.server", ("uvicorn", "granian"))
    http.draintimeout = duration(raw.get("draintimeout", http.draintimeout), "http.draintimeout")
    http.maxheadersize = integer(raw.get("maxheadersize", http.maxheadersize), "http.maxheadersize", minimum=8192)
    http.maxheaders = integer(raw.get("maxheaders", http.maxheaders), "http.maxheaders", minimum=10)
    http.headertimeout = duration(raw.get("headertimeout", http.headertimeout), "http.headertimeout")
    if http.headertimeout <= 0:
        raise ConfigError("http.headertimeout: must be positive")
    tls = section(raw, "http.tls", ("certificate", "key", "clientcas", "minimumtls"))
    http.tls = TLSConfig(
        certificate=tls.get("certificate"),
        key=tls.get("key"),
        clientcas=string_list(tls.get("clientcas", []), "http.tls.clientcas"),
        minimumtls=choice(tls.get("minimumtls", "tls1.2"), "http.tls.minimumtls",
                          ("tls1.0", "tls1.1", "tls1.2", "tls1.3")),
    )
    if bool(http.tls.certificate) != bool(http.tls.key):
        raise ConfigError("http.tls: certificate and key must be given together")
    debug = section(raw, "http.debug", ("addr", "prometheus"))
    http.debug_addr = string(debug["addr"], "http.debug.addr") if debug.get("addr") else None
    prometheus = section(debug, "http.debug.prometheus", ("enabled", "path"))
    http.debug_prometheus = boolean(prometheus.get("enabled", False), "http.debug.prometheus.enabled")
    http.debug_prometheus_path = url_path(prometheus.get("path", "/metrics"), "http.debug.prometheus.path")
    if http.debug_prometheus and not http.debug_addr:
        raise ConfigError("http.debug.prometheus.enabled: needs http.debug.addr")
    metrics = section(raw, "http.metrics", ("enabled", "path"))
    http.metrics = boolean(metrics.get("enabled", False), "http.metrics.enabled")
    http.metrics_path = url_path(metrics.get("path", "/metrics"), "http.metrics.path")
    return http


def url_path(value: Any, key: str) -> str:
    path = string(value, key)
    if not path.startswith("/") or path.startswith("/v2") or any(c in path for c in "?# "):
        raise ConfigError(f"{key}: expected a path starting with / (not /v2), got {value!r}")
    return path


def parse_headers(raw: Mapping[str, Any], where: str = "http.headers") -> list[tuple[str, str]]:
    """Distribution's ``http.headers``: name -> list of values, e.g. ``X-Content-Type-Options: [nosniff]``."""
    headers = []
    for name, values in raw.items():
        key = f"{where}.{name}"
        if not isinstance(name, str) or not name.isascii() or not name.replace("-", "").isalnum():
            raise ConfigError(f"{key}: not a valid header name")
        for value in string_list(values, key):
            if "\r" in value or "\n" in value:
                raise ConfigError(f"{key}: a value may not contain line breaks")
            headers.append((name, value))
    return headers


def parse_storage(raw: Mapping[str, Any]) -> StorageConfig:
    storage = StorageConfig()
    drivers = [k for k in raw if k not in STORAGE_SECTIONS]
    unknown = [k for k in drivers if k not in STORAGE_DRIVERS]
    if unknown:
        known = ", ".join(STORAGE_DRIVERS)
        raise ConfigError(f"storage.{unknown[0]}: unknown storage driver (known: {known})")
    if len(drivers) > 1:
        raise ConfigError(f"storage: exactly one driver may be configured, got {', '.join(drivers)}")
    if drivers:
        storage.driver = drivers[0]
        allowed = FILESYSTEM_KEYS if storage.driver == "filesystem" else None  # s3: checked by its driver
        storage.parameters = dict(section(raw, f"storage.{storage.driver}", allowed))
    if storage.driver == "filesystem":
        root = storage.parameters.get("rootdirectory", "./data")
        storage.parameters["rootdirectory"] = string(root, "storage.filesystem.rootdirectory")
    delete = section(raw, "storage.delete", ("enabled",))
    storage.delete_enabled = boolean(delete.get("enabled", True), "storage.delete.enabled")
    maintenance = section(raw, "storage.maintenance", ("uploadpurging", "readonly", "gc", "retention"))
    readonly = section(maintenance, "storage.maintenance.readonly", ("enabled",))
    storage.readonly = boolean(readonly.get("enabled", False), "storage.maintenance.readonly.enabled")
    purging = section(maintenance, "storage.maintenance.uploadpurging",
                      ("enabled", "age", "interval", "dryrun"))
    key = "storage.maintenance.uploadpurging"
    storage.upload_purge_enabled = boolean(purging.get("enabled", True), f"{key}.enabled")
    storage.upload_purge_dryrun = boolean(purging.get("dryrun", False), f"{key}.dryrun")
    if purging.get("age") is not None:
        storage.upload_purge_age = duration(purging["age"], f"{key}.age")
    if purging.get("interval") is not None:
        storage.upload_purge_interval = duration(purging["interval"], f"{key}.interval")
        if storage.upload_purge_interval <= 0:
            raise ConfigError(f"{key}.interval: must be positive")
    storage.gc = parse_gc(section(maintenance, "storage.maintenance.gc", GC_KEYS))
    from registry.retention import parse_retention  # (it reads its values with this module's helpers)

    retention = section(maintenance, "storage.maintenance.retention", None)
    storage.retention = parse_retention(retention) if retention else None
    if raw.get("quotas") is not None:
        from registry.quotas import parse_quotas

        storage.quotas = parse_quotas(raw["quotas"])
    redirect = section(raw, "storage.redirect", ("disable",))
    storage.redirect_disabled = boolean(redirect.get("disable", False), "storage.redirect.disable")
    return storage


def parse_ui(raw: Mapping[str, Any]) -> UIConfig:
    ui = UIConfig()
    ui.enabled = boolean(raw.get("enabled", True), "ui.enabled")
    ui.secret = string(raw["secret"], "ui.secret") if raw.get("secret") is not None else None
    if ui.secret is not None and len(ui.secret) < 16:
        raise ConfigError("ui.secret: use at least 16 characters")
    ui.sessionttl = duration(raw.get("sessionttl", ui.sessionttl), "ui.sessionttl")
    if ui.sessionttl <= 0:
        raise ConfigError("ui.sessionttl: must be positive")
    return ui


GC_KEYS = ("enabled", "interval", "grace", "deleteuntagged", "dryrun")


def parse_gc(raw: Mapping[str, Any]) -> GCConfig:
    key = "storage.maintenance.gc"
    gc = GCConfig()
    gc.enabled = boolean(raw.get("enabled", gc.enabled), f"{key}.enabled")
    gc.deleteuntagged = boolean(raw.get("deleteuntagged", gc.deleteuntagged), f"{key}.deleteuntagged")
    gc.dryrun = boolean(raw.get("dryrun", gc.dryrun), f"{key}.dryrun")
    gc.interval = duration(raw.get("interval", gc.interval), f"{key}.interval")
    if gc.interval <= 0:
        raise ConfigError(f"{key}.interval: must be positive")
    gc.grace = duration(raw.get("grace", gc.grace), f"{key}.grace")
    if gc.grace < 0:
        raise ConfigError(f"{key}.grace: must not be negative")
    return gc


def parse_validation(raw: Mapping[str, Any]) -> ValidationConfig:
    validation = ValidationConfig()
    validation.disabled = boolean(raw.get("disabled", not raw.get("enabled", True)), "validation.disabled")
    manifests = section(raw, "validation.manifests", ("urls",))
    urls = section(manifests, "validation.manifests.urls", ("allow", "deny"))
    if "allow" in urls:
        validation.manifest_urls_allow = patterns(urls["allow"], "validation.manifests.urls.allow")
    validation.manifest_urls_deny = patterns(urls.get("deny", []), "validation.manifests.urls.deny")
    return validation


def patterns(value: Any, key: str) -> list[re.Pattern[str]]:
    compiled = []
    for text in string_list(value, key):
        try:
            compiled.append(re.compile(text))
        except re.error as e:
            raise ConfigError(f"{key}: invalid regular expression {text!r}: {e}") from None
    return compiled


def section(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...] | None) -> Mapping[str, Any]:
    """The mapping at ``key`` (empty if absent); ``allowed`` lists the sub-keys accepted."""
    value = raw if key == "" else raw.get(key.rsplit(".", 1)[-1])
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    if allowed is not None:
        for sub in value:
            if sub not in allowed:
                where = f"{key}.{sub}" if key else str(sub)
                raise ConfigError(f"{where}: unknown key")
    return value


def string(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
    return str(value)


def string_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of strings")
    return [string(v, key) for v in value]


def boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def workers(value: Any, key: str) -> int:
    """A whole number >= 1, or ``auto``: one process per CPU this process may run on (as Distribution uses
    every core; measured on 2 cores: 1.4-2x the request rates and pull of one process)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return integer(value, key, minimum=1)


def integer(value: Any, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected a whole number >= {minimum}, got {value!r}")
    return value


def choice(value: Any, key: str, options: tuple[str, ...]) -> str:
    text = string(value, key).lower()
    if text not in options:
        raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
    return text


DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(value: Any, key: str) -> float:
    """Go-style durations (``168h``, ``90m``, ``1h30m``; ``30d`` too) or plain seconds, in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = string(value, key).strip()
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in DURATION_UNITS else ch
        if unit not in DURATION_UNITS or not number:
            raise ConfigError(f"{key}: invalid duration {value!r}")
        total += float(number) * DURATION_UNITS[unit]
        number = ""
        i += len(unit)
    if number:
        raise ConfigError(f"{key}: invalid duration {value!r} (missing unit)")
    return total
