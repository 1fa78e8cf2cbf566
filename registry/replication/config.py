"""The ``replication`` config section: remotes, rules, and how the replicas share the work.

```yaml
replication:
  remotes:
    - {name: dr, url: https://dr.example.internal:5000, username: replicator, passwordfile: /run/secrets/dr}
  rules:
    - {name: to-dr, direction: push, remote: dr, repositories: ["payments/**"], trigger: event, deletes: true}
```

Every key is documented in config.example.yml and docs/replication.md.  A remote's password comes from
``password``, ``passwordfile`` (read at start) or the ``REGISTRY_REPLICATION_REMOTES_<n>_PASSWORD``
variable; it is never shown by the API or the UI.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError
from pydantic import Field, model_validator

from auth.settings import PATTERN_RE
from configkit import Bool, ConfigError, Duration, Invalid, PositiveDuration, Section, Str, Texts, choice, integer
from registry.maintenance.quotas import Size
from registry.maintenance.retention import TAG_PATTERN_RE
from registry.names import NAME_RE
from registry.replication.rules import EVENT, MANUAL, PULL, PUSH, SCHEDULE, Remote, Retry, Rule

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # names a storage directory and a metrics label


class RemoteSettings(Section):
    """One entry of ``replication.remotes``."""

    name: Str = ""
    url: Str = ""
    username: Str | None = None
    password: Str | None = None
    passwordfile: Str | None = None
    cacert: Str | None = None  # CA bundle (PEM) to verify the remote's certificate with
    insecure: Bool = False  # no certificate verification (or plain http)
    timeout: PositiveDuration = 30.0

    @model_validator(mode="after")
    def _check(self) -> RemoteSettings:
        if not SAFE_NAME.fullmatch(self.name):
            raise Invalid("required: letters, digits, '.', '_' and '-'", "name")
        self.url = self.url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise Invalid(f"expected http(s)://HOST[:PORT], got {self.url!r}", "url")
        if self.password is not None and self.passwordfile is not None:
            raise Invalid("give password or passwordfile, not both")
        if self.username is None and (self.password is not None or self.passwordfile is not None):
            raise Invalid("a password needs a username", "username")
        if self.cacert is not None and self.insecure:
            raise Invalid("cacert and insecure exclude each other")
        return self

    def remote(self, key: str) -> Remote:
        """The remote, its password file read now (a start-up error names ``key``)."""
        password = self.password
        if self.passwordfile is not None:
            try:
                password = Path(self.passwordfile).read_text().rstrip("\r\n")
            except OSError as e:
                raise ConfigError(f"{key}.passwordfile: cannot read {self.passwordfile}: {e.strerror}") from None
        if self.cacert is not None and not Path(self.cacert).is_file():
            raise ConfigError(f"{key}.cacert: file not found: {self.cacert}")
        return Remote(self.name, self.url, self.username, password, self.cacert, self.insecure, self.timeout)


class DestinationSettings(Section):
    strip: Str = ""  # removed from the front of the source name
    prefix: Str = ""  # then put in front of it

    @model_validator(mode="after")
    def _check(self) -> DestinationSettings:
        for key in ("strip", "prefix"):
            value = getattr(self, key).strip("/")
            if value and not NAME_RE.fullmatch(value):
                raise Invalid(f"{value!r} is not a repository name prefix", key)
            setattr(self, key, value)
        return self


class RetrySettings(Section):
    attempts: integer(0, 100) = 3  # runs after the first one failed; 0: never again
    backoff: PositiveDuration = 30.0
    maxbackoff: PositiveDuration = 3600.0


class RuleSettings(Section):
    """One entry of ``replication.rules``."""

    name: Str = ""
    direction: choice(PUSH, PULL) = PUSH
    remote: Str = ""
    repositories: Texts = ["**"]
    excluderepositories: Texts = []
    tags: Texts = ["*"]
    tagregex: Str | None = None
    excludetags: Texts = []
    artifacttypes: Texts = []
    labels: dict[str, Str] = {}
    destination: DestinationSettings = Field(default_factory=DestinationSettings)
    trigger: choice(EVENT, SCHEDULE, MANUAL) = MANUAL
    interval: PositiveDuration | None = None
    cron: Str | None = None
    deletes: Bool = False
    overwrite: Bool = True
    referrers: Bool = True
    recheck: Duration = 21600.0  # 6h; 0: a HEAD of every destination tag on every run
    concurrency: integer(1, 64) = 4
    bandwidth: Size = 0  # bytes per second, e.g. 20MB; 0: unlimited
    chunksize: Size = 0  # 0: each blob in one request
    requestretries: integer(0, 20) = 3
    retry: RetrySettings = Field(default_factory=RetrySettings)

    @model_validator(mode="after")
    def _check(self) -> RuleSettings:
        if not SAFE_NAME.fullmatch(self.name):
            raise Invalid("required: letters, digits, '.', '_' and '-'", "name")
        if not self.remote:
            raise Invalid("required: the name of an entry of replication.remotes", "remote")
        for key in ("repositories", "excluderepositories"):
            for pattern in getattr(self, key):
                if not PATTERN_RE.fullmatch(pattern) or "{user}" in pattern:
                    raise Invalid(f"bad pattern {pattern!r} (lowercase names, / * ** ? only)", key)
        for key in ("tags", "excludetags"):
            for pattern in getattr(self, key):
                if not TAG_PATTERN_RE.fullmatch(pattern):
                    raise Invalid(f"bad tag pattern {pattern!r}", key)
        if self.tagregex is not None:
            try:
                re.compile(self.tagregex)
            except re.error as e:
                raise Invalid(f"invalid regular expression: {e}", "tagregex") from None
        self._check_trigger()
        if 0 < self.chunksize < 1 << 20:
            raise Invalid("expected 0 or at least 1MiB", "chunksize")
        return self

    def _check_trigger(self) -> None:
        if self.trigger == EVENT and self.direction != PUSH:
            raise Invalid("event triggers replicate this registry's pushes: use direction: push, or a schedule",
                          "trigger")
        if self.trigger == SCHEDULE:
            if (self.interval is None) == (self.cron is None):
                raise Invalid("a schedule needs interval or cron (one of them)", "trigger")
            if self.cron is not None:
                try:
                    CronSim(self.cron, datetime.datetime(2000, 1, 1))
                except CronSimError as e:
                    raise Invalid(f"invalid cron expression {self.cron!r}: {e}", "cron") from None
        elif self.interval is not None or self.cron is not None:
            raise Invalid("interval and cron apply to trigger: schedule only", "trigger")

    def rule(self, remote: Remote) -> Rule:
        return Rule(
            name=self.name, direction=self.direction, remote=remote, repositories=tuple(self.repositories),
            exclude_repositories=tuple(self.excluderepositories), tags=tuple(self.tags),
            tag_regex=re.compile(self.tagregex) if self.tagregex is not None else None,
            exclude_tags=tuple(self.excludetags), artifact_types=frozenset(self.artifacttypes),
            labels=dict(self.labels), strip=self.destination.strip, prefix=self.destination.prefix,
            trigger=self.trigger, interval=self.interval, cron=self.cron, deletes=self.deletes,
            overwrite=self.overwrite, referrers=self.referrers, recheck=self.recheck, concurrency=self.concurrency,
            bandwidth=self.bandwidth, chunksize=self.chunksize, requestretries=self.requestretries,
            retry=Retry(self.retry.attempts, self.retry.backoff, self.retry.maxbackoff),
        )


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    rules: dict[str, Rule]
    poll: float  # seconds between looks at the storage for work other replicas queued
    lease: float  # seconds a replica holds a rule without renewing it (a dead one's rules move on then)
    keep: int  # finished executions kept per rule


class ReplicationSettings(Section):
    """``replication``: empty (the default) replicates nothing."""

    KEY = "replication"

    remotes: list[RemoteSettings] = []
    rules: list[RuleSettings] = []
    poll: PositiveDuration = 2.0
    lease: Duration = 30.0
    keep: integer(1) = 50

    @model_validator(mode="after")
    def _check(self) -> ReplicationSettings:
        remotes = [r.name for r in self.remotes]
        if len(set(remotes)) != len(remotes):
            raise Invalid("names must be unique", "remotes")
        rules = [r.name for r in self.rules]
        if len(set(rules)) != len(rules):
            raise Invalid("names must be unique", "rules")
        for i, rule in enumerate(self.rules):
            if rule.remote not in remotes:
                raise Invalid(f"no remote named {rule.remote!r} in replication.remotes", f"rules[{i}].remote")
        if self.lease <= 2 * self.poll:
            raise Invalid("must be more than twice replication.poll", "lease")
        return self

    def replication(self) -> ReplicationConfig | None:
        """The rules with their remotes (password files read now); None when there is no rule."""
        if not self.rules:
            return None
        remotes = {r.name: r.remote(f"replication.remotes[{i}]") for i, r in enumerate(self.remotes)}
        rules = {r.name: r.rule(remotes[r.remote]) for r in self.rules}
        return ReplicationConfig(rules, self.poll, self.lease, self.keep)

