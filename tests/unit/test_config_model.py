"""The one config mechanism (configkit): in every section a wrong type, an unknown key and a bad
``REGISTRY_*`` override give an error naming the key; Distribution's environment rules; where an error
was set (file or variable); Debian's shipped config; the start-up line (tests/deploy/test_startup_line.py
runs a real ``moorage serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from configkit import ConfigError
from registry import config as config_module
from registry.http.server import startup_line

# (section, a key of it, a value of the wrong type): every section of the config file
SECTIONS: list[tuple[str, str, Any]] = [
    ("", "loglevel", "loud"),
    ("log", "level", "loud"),
    ("log.accesslog", "disabled", "sometimes"),
    ("log", "formatter", "xml"),
    ("log.fields", "service", ["registry"]),
    ("log.audit", "path", ["audit.jsonl"]),
    ("http.debug.prometheus", "enabled", "maybe"),
    ("http.metrics", "path", "metrics"),
    ("notifications", "poll", "often"),
    ("notifications.events", "includereferences", "maybe"),
    ("notifications.endpoints.0", "timeout", "soon"),
    ("notifications.endpoints.0.ignore", "actions", {"push": 1}),
    ("http", "workers", "many"),
    ("http.tls", "minimumtls", "ssl3"),
    ("http.debug", "addr", ["127.0.0.1:5001"]),
    ("http.headers", "X-Frame-Options", {"deny": 1}),
    ("storage", "filesystem", "/var/lib/registry"),
    ("storage.filesystem", "fsync", "maybe"),
    ("storage.s3", "chunksize", "ten"),
    ("storage.delete", "enabled", "maybe"),
    ("storage.maintenance", "readonly", True),
    ("storage.maintenance.readonly", "enabled", "maybe"),
    ("storage.maintenance.uploadpurging", "age", "a week"),
    ("storage.maintenance.gc", "interval", "often"),
    ("storage.maintenance.retention", "policies", {"ci": 1}),
    ("storage.maintenance.retention.policies.0", "keepnewest", "ten"),
    ("storage.quotas.0", "limit", "lots"),
    ("storage.redirect", "disable", 2),
    ("validation", "disabled", "maybe"),
    ("validation.manifests", "urls", ["^https://"]),
    ("validation.manifests.urls", "deny", {"a": 1}),
    ("ui", "sessionttl", "soon"),
    ("auth.htpasswd", "realm", ["r"]),
    ("auth.token", "autoredirect", "maybe"),
    ("auth.tokenserver", "expiration", "5 fortnights"),
    ("auth.tokenserver.tls", "certificate", ["a.crt"]),
    ("auth.access", "admins", {"alice": 1}),
    ("auth.access", "metrics", {"alice": 1}),
    ("auth.brake", "attempts", "many"),
    ("http", "headertimeout", "soon"),
    ("storage.s3", "readtimeout", "2h"),
    ("auth.access.groups", "ci", {"bot": 1}),
    ("proxy", "ttl", "5 parsecs"),
]
# sections whose keys are free names (header names, group names): no key there is unknown
FREE_MAPPINGS = {"http.headers", "auth.access.groups", "log.fields"}


def nested(path: str, leaf: dict[str, Any]) -> dict[str, Any]:
    """``a.b.0`` -> ``{a: {b: [leaf]}}`` (a number is an item of a list)."""
    raw: Any = leaf
    for part in reversed(path.split(".") if path else []):
        raw = [raw] if part.isdigit() else {part: raw}
    return raw


def env_name(*keys: str) -> str:
    return "REGISTRY_" + "_".join(k.upper().replace(".", "_") for k in keys if k)


def dotted(path: str, key: str) -> str:
    """The key as errors name it: ``storage.quotas.0`` + ``limit`` -> ``storage.quotas[0].limit``."""
    parts = [*(path.split(".") if path else []), key]
    return "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(parts))


def error_of(raw: dict[str, Any] | None = None, environ: dict[str, str] | None = None,
             path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        if raw is not None:
            config_module.parse(raw)
        else:
            config_module.load(path, environ=environ or {})
    return str(caught.value)


@pytest.mark.parametrize(("section", "key", "bad"), SECTIONS, ids=[dotted(s, k) for s, k, _ in SECTIONS])
def test_wrong_type_names_the_key(section: str, key: str, bad: Any) -> None:
    assert f"{dotted(section, key)}: " in error_of(nested(section, {key: bad}))


@pytest.mark.parametrize("section", sorted({s for s, _, _ in SECTIONS} - FREE_MAPPINGS))
def test_unknown_key_names_the_key(section: str) -> None:
    message = error_of(nested(section, {"colour": "blue"}))
    assert f"{dotted(section, 'colour')}: " in message and "known: " in message, message


@pytest.mark.parametrize(("section", "key", "bad"), [s for s in SECTIONS if s[0] not in FREE_MAPPINGS],
                         ids=[dotted(s, k) for s, k, _ in SECTIONS if s not in FREE_MAPPINGS])
def test_bad_environment_override_names_the_variable_and_the_key(section: str, key: str, bad: Any) -> None:
    name = env_name(section, key)
    value = bad if isinstance(bad, str) else repr(bad).replace("'", '"')
    message = error_of(environ={name: value})
    assert f"{name}: {dotted(section, key)}: " in message, message
    unknown = env_name(section, "colour")
    assert error_of(environ={unknown: "blue"}).startswith(f"{unknown}: {dotted(section, 'colour')}: "), unknown


def test_list_items_from_the_environment() -> None:
    env = {"REGISTRY_PROXY_UPSTREAMS_0_PREFIX": "hub", "REGISTRY_PROXY_UPSTREAMS_0_URL": "https://r.example",
           "REGISTRY_PROXY_UPSTREAMS_1": "{prefix: ghcr, url: 'https://ghcr.io'}",
           "REGISTRY_PROXY_UPSTREAMS_1_TTL": "1h"}
    mirror = config_module.load(None, environ=env).proxy.mirror()
    assert mirror is not None
    assert [(u.prefix, u.url, u.ttl) for u in mirror.upstreams] == [("hub", "https://r.example", 300.0),
                                                                    ("ghcr", "https://ghcr.io", 3600.0)]
    bad = {**env, "REGISTRY_PROXY_UPSTREAMS_1_TTL": "an age"}
    assert error_of(environ=bad).startswith("REGISTRY_PROXY_UPSTREAMS_1_TTL: proxy.upstreams[1].ttl: ")
    gap = {"REGISTRY_PROXY_UPSTREAMS_2_URL": "https://x.example"}
    assert error_of(environ=gap).startswith("REGISTRY_PROXY_UPSTREAMS_2_URL: proxy.upstreams: 2 is not")


def test_environment_rules_are_distributions(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("storage:\n  filesystem: {rootdirectory: /file}\nauth:\n  htpasswd: {path: /h}\n"
                    "  access:\n    groups: {CI: [bot]}\n    rules: []\n")
    env = {
        # a whole section first (lexical order), then a key inside it
        "REGISTRY_STORAGE": "{filesystem: {rootdirectory: /section, fsync: false}}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/key",
        # values are YAML; keys of a free mapping match case-insensitively, else are lower-cased
        "REGISTRY_AUTH_ACCESS_GROUPS_CI": "[bot, robot]",
        "REGISTRY_AUTH_ACCESS_GROUPS_OPS": "carol",
        "REGISTRY_HTTP_TRUSTEDPROXIES": "[10.0.0.0/8]",
        "PATH": "/usr/bin",  # not ours
    }
    config = config_module.load(path, environ=env)
    assert config.storage.filesystem is not None
    assert (config.storage.filesystem.rootdirectory, config.storage.filesystem.fsync) == ("/key", False)
    assert config.auth.access is not None and config.auth.access.groups == {"CI": ["bot", "robot"], "ops": ["carol"]}
    assert config.http.trustedproxies == ["10.0.0.0/8"]
    assert error_of(environ={"REGISTRY_HTTP_ADDR_PORT": "1"}).startswith(
        "REGISTRY_HTTP_ADDR_PORT: http.addr: a single value, it has no key 'port'")
    assert error_of(environ={"REGISTRY_HTTP__ADDR": "x:1"}).startswith("REGISTRY_HTTP__ADDR: empty key")


def test_errors_say_where_each_key_was_set(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("http:\n  workers: 0\nlog:\n  level: loud\n")
    lines = error_of(environ={"REGISTRY_LOG_LEVEL": "louder"}, path=path).splitlines()
    assert lines == [
        "REGISTRY_LOG_LEVEL: log.level: expected one of debug, info, warn, warning, error, got 'louder'",
        f"{path}: http.workers: expected a whole number >= 1, got 0",
    ]


def test_auth_error_format() -> None:
    message = error_of({"auth": {"token": {"service": "s", "issuer": "i", "rootcertbundle": "/c.pem"}}})
    assert message.startswith("auth.token.realm: expected a non-empty string"), message
    assert config_module.parse({"auth": {"token": {"service": "s", "issuer": "i", "rootcertbundle": "/c.pem",
                                                   "autoredirect": True}}}).auth.token is not None


DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def test_debian_docker_registry_config_loads(tmp_path: Path) -> None:
    """/etc/docker/registry/config.yml as Debian's docker-registry package installs it."""
    path = tmp_path / "config.yml"
    path.write_text(DEBIAN_CONFIG)
    config = config_module.load(path, environ={})
    assert config.storage.filesystem is not None and config.storage.filesystem.rootdirectory == \
        "/var/lib/docker-registry"
    assert config.http.addr == ":5000" and config.http.header_pairs == [("X-Content-Type-Options", "nosniff")]
    assert config.auth.htpasswd is not None and config.auth.htpasswd.realm == "basic-realm"


def test_distribution_spellings() -> None:
    config = config_module.parse({"loglevel": "warn", "validation": {"enabled": False}})
    assert config.log_level == "warning" and config.validation.disabled
    both = config_module.parse({"loglevel": "error", "log": {"level": "debug"}})
    assert both.log_level == "debug"  # log.level wins, as in Distribution


def test_startup_line_names_what_is_served(tmp_path: Path) -> None:
    raw = {"http": {"addr": "[::1]:5443", "prefix": "/reg", "debug": {"addr": "127.0.0.1:5001"},
                    "tls": {"certificate": "/c.crt", "key": "/c.key"}},
           "storage": {"s3": {"bucket": "images", "rootdirectory": "/registry", "regionendpoint": "minio:9000",
                              "secure": False}},
           "auth": {"htpasswd": {"path": "/h"}}}
    line = startup_line(config_module.parse(raw), "/etc/moorage/config.yml")
    assert "serving https://[::1]:5443/reg/ and debug http://127.0.0.1:5001/" in line
    assert "storage s3 s3://images/registry at http://minio:9000" in line
    assert "auth htpasswd" in line and "config /etc/moorage/config.yml" in line
    plain = startup_line(config_module.parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path)}}}), None)
    assert f"serving http://0.0.0.0:5000/; storage filesystem {tmp_path}; auth none; config none" in plain
