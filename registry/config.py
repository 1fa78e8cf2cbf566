"""The registry's configuration: one YAML file with Distribution's keys, plus ``REGISTRY_*``
environment overrides, read into one typed model (``Config``).

Every section is a ``configkit.Section``: its fields are its keys, with types and defaults; unknown
keys are refused and every error names its key. The sections of the other packages are theirs:
``auth`` (auth.settings), the storage drivers' parameters (storage), ``proxy`` (registry.mirror.config),
``replication`` (registry.replication.config).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, PlainValidator, field_validator, model_validator

from auth.settings import AuthSettings
from configkit import (
    Addr,
    Bool,
    ConfigError,
    Duration,
    Headers,
    Invalid,
    Patterns,
    PositiveDuration,
    Section,
    Str,
    Strings,
    choice,
    header_pairs,
    integer,
    load_file,
)
from configkit.types import to_integer, to_string
from registry.events.notifications.config import NotificationsSettings
from registry.maintenance.quotas import QuotasConfig
from registry.maintenance.retention import Retention, RetentionConfig
from registry.mirror.config import ProxyConfig
from registry.replication.config import ReplicationSettings
from storage.database import DatabaseSettings
from storage.driver.filesystem import FilesystemParameters
from storage.driver.s3_config import S3Parameters

__all__ = ["Config", "ConfigError", "HTTPConfig", "StorageConfig", "TLSConfig", "ValidationConfig", "load", "parse"]

STORAGE_DRIVERS = ("filesystem", "s3")


class TLSConfig(Section):
    certificate: Str | None = None
    key: Str | None = None
    clientcas: Strings = []
    minimumtls: choice("tls1.0", "tls1.1", "tls1.2", "tls1.3") = "tls1.2"

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if bool(self.certificate) != bool(self.key):
            raise Invalid("certificate and key must be given together")
        return self


def to_url_path(value: Any) -> str:
    path = to_string(value)
    if not path.startswith("/") or path.startswith("/v2") or any(c in path for c in "?# "):
        raise Invalid(f"expected a path starting with / (not /v2), got {value!r}")
    return path


URLPath = Annotated[str, PlainValidator(to_url_path)]


def cpu_count() -> int:
    """The CPUs this process may use: its affinity mask, bounded by a cgroup v2 CPU quota (containers)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as limits:
            quota, period = limits.read().split()
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, -(-int(quota) // int(period))))


class AutoWorkers(int):
    """``http.workers: auto``'s count: unlike a number given, the registry may lower it when its config
    keeps state that worker processes cannot share (``Config._one_process``)."""


def auto_workers() -> AutoWorkers:
    return AutoWorkers(cpu_count())


def to_workers(value: Any) -> int:
    """A whole number >= 1, or ``auto``: one process per CPU this process may use (as Distribution uses
    every core; the workers share what they imported, see registry.http.workers)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return auto_workers()
    return to_integer(value, 1)


Workers = Annotated[int, PlainValidator(to_workers)]


class MetricsEndpoint(Section):
    enabled: Bool = False
    path: URLPath = "/metrics"


class DebugConfig(Section):
    addr: Str | None = None  # a second listener: /debug/health, /livez, /healthz, /readyz
    prometheus: MetricsEndpoint = Field(default_factory=MetricsEndpoint)  # /metrics there

    @model_validator(mode="after")
    def _prometheus(self) -> DebugConfig:
        if self.prometheus.enabled and not self.addr:
            raise Invalid("needs http.debug.addr", "prometheus.enabled")
        return self


class HTTPConfig(Section):
    IGNORED = ("secret", "http2", "h2c")  # upload state lives in storage: nothing is signed

    addr: Addr = "0.0.0.0:5000"
    net: choice("tcp") = "tcp"  # Distribution's unix sockets are not served
    host: Str | None = None  # external base URL used in Location headers
    prefix: Str = "/"
    relativeurls: Bool = False
    trustedproxies: Strings = []
    tls: TLSConfig = Field(default_factory=TLSConfig)
    debug: DebugConfig = Field(default_factory=DebugConfig)
    workers: Workers = Field(default_factory=auto_workers)  # auto
    server: choice("uvicorn", "granian") = "uvicorn"
    draintimeout: Duration = 30.0  # seconds requests in flight get to finish after SIGTERM
    headers: Headers = {}  # added to every /v2 response
    maxheadersize: integer(8192) = 65536  # bytes of a request's head (request line and headers)
    maxheaders: integer(10) = 100  # header fields of a request
    headertimeout: PositiveDuration = 10.0  # seconds for a connection to send a complete request head
    bodytimeout: PositiveDuration = 60.0  # seconds a request body may send nothing (nginx's client_body_timeout)
    metrics: MetricsEndpoint = Field(default_factory=MetricsEndpoint)  # /metrics here too, behind auth

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        return host.rstrip("/") if host else None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"

    @property
    def debug_addr(self) -> str | None:
        return self.debug.addr or None

    @property
    def debug_prometheus(self) -> bool:
        return self.debug.prometheus.enabled

    @property
    def debug_prometheus_path(self) -> str:
        return self.debug.prometheus.path

    @property
    def header_pairs(self) -> list[tuple[str, str]]:
        return header_pairs(self.headers)


class Enabled(Section):
    enabled: Bool = True


class Disabled(Section):
    enabled: Bool = False


class UploadPurging(Section):
    enabled: Bool = True  # remove uploads abandoned for longer than age
    age: Duration = 7 * 24 * 3600.0
    interval: PositiveDuration = 24 * 3600.0
    dryrun: Bool = False


class GCConfig(Section):
    """``storage.maintenance.gc``: scheduled online garbage collection (docs/gc.md)."""

    enabled: Bool = False
    interval: PositiveDuration = 24 * 3600.0
    grace: Duration = 3600.0  # what was pushed or relied on this recently is never collected
    deleteuntagged: Bool = False
    dryrun: Bool = False


class Maintenance(Section):
    uploadpurging: UploadPurging = Field(default_factory=UploadPurging)
    readonly: Disabled = Field(default_factory=Disabled)
    gc: GCConfig = Field(default_factory=GCConfig)
    retention: RetentionConfig | None = None  # applied by GC runs


class Redirect(Section):
    disable: Bool = False


class StorageConfig(Section):
    """One driver section (filesystem, the default, or s3) and the driver-independent ones."""

    IGNORED = ("cache",)
    UNKNOWN = "unknown storage driver or key"

    filesystem: FilesystemParameters | None = None
    s3: S3Parameters | None = None
    delete: Enabled = Field(default_factory=Enabled)
    maintenance: Maintenance = Field(default_factory=Maintenance)
    redirect: Redirect = Field(default_factory=Redirect)
    quotas: QuotasConfig | None = None  # byte limits per namespace

    @model_validator(mode="after")
    def _one_driver(self) -> StorageConfig:
        drivers = [name for name in STORAGE_DRIVERS if getattr(self, name) is not None]
        if len(drivers) > 1:
            raise Invalid(f"exactly one driver may be configured, got {', '.join(drivers)}")
        if not drivers:
            self.filesystem = FilesystemParameters()
        return self

    @property
    def driver(self) -> str:
        return "s3" if self.s3 is not None else "filesystem"

    @property
    def parameters(self) -> FilesystemParameters | S3Parameters:
        """The driver's section."""
        return self.s3 if self.s3 is not None else self.filesystem  # type: ignore[return-value]

    @property
    def delete_enabled(self) -> bool:
        return self.delete.enabled

    @property
    def readonly(self) -> bool:
        return self.maintenance.readonly.enabled

    @property
    def redirect_disabled(self) -> bool:
        return self.redirect.disable

    @property
    def upload_purge_enabled(self) -> bool:
        return self.maintenance.uploadpurging.enabled

    @property
    def upload_purge_age(self) -> float:
        return self.maintenance.uploadpurging.age

    @property
    def upload_purge_interval(self) -> float:
        return self.maintenance.uploadpurging.interval

    @property
    def upload_purge_dryrun(self) -> bool:
        return self.maintenance.uploadpurging.dryrun

    @property
    def gc(self) -> GCConfig:
        return self.maintenance.gc

    @property
    def retention(self) -> Retention | None:
        return self.maintenance.retention


class URLValidation(Section):
    # Foreign-layer URL patterns: None allows any http(s) URL (what OCI's conformance suite pushes)
    allow: Patterns | None = None
    deny: Patterns = []


class ManifestValidation(Section):
    urls: URLValidation = Field(default_factory=URLValidation)


class ValidationConfig(Section):
    disabled: Bool = False
    enabled: Bool | None = None  # Distribution's spelling: `enabled: false` is `disabled: true`
    manifests: ManifestValidation = Field(default_factory=ManifestValidation)

    @model_validator(mode="after")
    def _enabled(self) -> ValidationConfig:
        if self.enabled is not None and "disabled" not in self.model_fields_set:
            self.disabled = not self.enabled
        return self

    @property
    def manifest_urls_allow(self) -> list[re.Pattern[str]] | None:
        return self.manifests.urls.allow

    @property
    def manifest_urls_deny(self) -> list[re.Pattern[str]]:
        return self.manifests.urls.deny


class UIConfig(Section):
    """The web UI at /ui/."""

    enabled: Bool = True
    secret: Str | None = None  # signs session cookies; random per process when unset
    sessionttl: PositiveDuration = 12 * 3600.0

    @field_validator("secret")
    @classmethod
    def _secret(cls, secret: str | None) -> str | None:
        if secret is not None and len(secret) < 16:
            raise Invalid("use at least 16 characters")
        return secret


LogLevel = choice("debug", "info", "warn", "warning", "error")


class AccessLog(Section):
    disabled: Bool = False  # one line per request (the ASGI server's access log)


class AuditLog(Section):
    path: Str | None = None  # audit events also appended to this file (JSON lines)


class LogConfig(Section):
    IGNORED = ("hooks",)

    level: LogLevel = "info"
    formatter: choice("text", "json", "logstash") = "text"  # Distribution's; logstash is written as json
    fields: dict[str, Str] = {}  # added to every log event
    accesslog: AccessLog = Field(default_factory=AccessLog)
    audit: AuditLog = Field(default_factory=AuditLog)


class Config(Section):
    IGNORED = ("version", "redis", "health", "reporting", "compatibility")

    log: LogConfig = Field(default_factory=LogConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    notifications: NotificationsSettings = Field(default_factory=NotificationsSettings)
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)

    loglevel: LogLevel | None = None  # Distribution's older spelling of log.level

    @model_validator(mode="after")
    def _loglevel(self) -> Config:
        if self.loglevel is not None and "level" not in self.log.model_fields_set:
            self.log.level = self.loglevel
        return self

    @model_validator(mode="after")
    def _one_process(self) -> Config:
        """``auto`` serves from one process when a UI login would not survive a change of worker: auth.oidc
        without auth.database keeps who logged in through the provider in the memory of the process that
        saw the callback, and another worker would log that session out."""
        if isinstance(self.http.workers, AutoWorkers) and self.one_process_reason:
            self.http.workers = AutoWorkers(1)
        return self

    @property
    def one_process_reason(self) -> str | None:
        """Why ``http.workers: auto`` means one process with this config; None when it need not."""
        if self.auth.oidc is not None and self.auth.database is None:
            return "auth.oidc without auth.database keeps its single sign-ons in one process's memory"
        return None

    @property
    def log_level(self) -> str:
        """Python's name of the level (``warn`` is ``warning``)."""
        return "warning" if self.log.level == "warn" else self.log.level

    @property
    def accesslog(self) -> bool:
        return not self.log.accesslog.disabled

    @property
    def log_formatter(self) -> str:
        return "json" if self.log.formatter == "logstash" else self.log.formatter

    @property
    def log_fields(self) -> dict[str, str]:
        return self.log.fields

    @property
    def audit_path(self) -> str | None:
        return self.log.audit.path or None

    @property
    def metrics_enabled(self) -> bool:
        """Whether requests and storage calls are measured: some ``/metrics`` is served."""
        return self.http.debug_prometheus or self.http.metrics.enabled


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply the ``REGISTRY_*`` environment overrides and check it all."""
    return load_file(Config, path, os.environ if environ is None else environ)


def parse(raw: Mapping[str, Any]) -> Config:
    return Config.parse(raw)

