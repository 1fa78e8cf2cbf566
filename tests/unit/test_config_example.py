"""config.example.yml documents every key Moorage reads, spelled the way the code reads it.

The example's active keys must be the defaults. Its commented-out keys are uncommented mechanically
(a ``# `` in front of a YAML key or list item), the alternatives are split into two complete configs
(filesystem + token auth + one upstream; S3 + htpasswd + several upstreams), file paths are pointed at
real temporary files (a bcrypt htpasswd, a key and certificate from ``moorage auth keygen``'s code, a
JWKS), and each config goes through every reader: ``registry.config.parse``, the storage driver's
parameters, ``auth.factory`` (access controller and token server), the standalone token server's
settings and ``registry.mirror.config.parse_proxy``.

Then every leaf value is replaced by garbage in turn. A key the code reads changes the outcome
(nearly always an error naming the key); a misspelled or unread key changes nothing and fails the
test. This matters below ``http``, ``validation`` and ``storage.filesystem``, where the config parser
does not refuse unknown keys itself. Conversely, the keys the code knows must all be in the example.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import yaml

from auth import factory, htpasswd, keygen, keys, settings, standalone
from auth.policy import policy_cache
from registry import config as config_module
from registry.events.notifications.config import parse_notifications
from registry.http.server import ssl_context
from registry.instance import open_database
from registry.mirror import config as mirror_config
from registry.replication import config as replication_config
from storage.driver.factory import build_driver
from storage.driver.s3_config import S3Parameters

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yml"
# `# key: value`, `#   key:`, `#     - key: value` (not prose: that starts otherwise or has no `key:`)
COMMENTED_SETTING = re.compile(r"^(?P<indent> *)# (?P<body> *(?:- )?[a-z][a-z0-9_]*:(?: .*)?)$")
GARBAGE = {"garbage": ["not", "a", "value"]}
IGNORED = {"version"}  # documented as accepted and ignored
Path_ = tuple[str | int, ...]


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load keeps the last of duplicate keys silently; uncommenting must not create any."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            assert key not in seen, f"config.example.yml: duplicate key {key!r} (line {key_node.start_mark.line + 1})"
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def uncommented(text: str) -> str:
    lines = []
    for line in text.splitlines():
        m = COMMENTED_SETTING.match(line)
        lines.append(m["indent"] + m["body"] if m else line)
    return "\n".join(lines) + "\n"


def full_example() -> dict[str, Any]:
    return yaml.load(uncommented(EXAMPLE.read_text()), Loader=UniqueKeyLoader)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def get(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def put(node: Any, path: Path_, value: Any) -> None:
    get(node, path[:-1])[path[-1]] = value


def leaves(node: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("example")
    key, cert = tmp / "token.key", tmp / "token.crt"
    keygen.write_keypair(key, cert, "ES256")
    public = keys.load_private_key(key, "key").public_key()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    (tmp / "token.jwks").write_text(json.dumps({"keys": [{**jwk, "kid": "example", "alg": "ES256"}]}))
    htpasswd.set_password(tmp / "htpasswd", "alice", "secret", cost=4)
    (tmp / "spool").mkdir()
    return {
        ("http", "tls", "certificate"): str(cert),
        ("http", "tls", "key"): str(key),
        ("http", "tls", "clientcas"): [str(cert)],
        ("storage", "filesystem", "rootdirectory"): str(tmp / "data"),
        ("auth", "htpasswd", "path"): str(tmp / "htpasswd"),
        ("auth", "token", "rootcertbundle"): str(cert),
        ("auth", "token", "jwks"): str(tmp / "token.jwks"),
        ("auth", "tokenserver", "htpasswd"): str(tmp / "htpasswd"),
        ("auth", "tokenserver", "key"): str(key),
        ("auth", "tokenserver", "certificate"): str(cert),
        ("auth", "tokenserver", "tls", "certificate"): str(cert),
        ("auth", "tokenserver", "tls", "key"): str(key),
        ("auth", "ldap", "cacertificate"): str(cert),
        ("auth", "oidc", "cacertificate"): str(cert),
        ("proxy", "spooldir"): str(tmp / "spool"),
        ("replication", "remotes", 0, "cacert"): str(cert),
        ("replication", "remotes", 1, "passwordfile"): str(tmp / "htpasswd"),
    }


@pytest.fixture(scope="module")
def variants(files: dict[Path_, Any]) -> dict[str, dict[str, Any]]:
    """The uncommented example as two configs, each with one of every alternative."""
    full = full_example()
    for path, value in files.items():
        get(full, path)  # KeyError: the example lacks a key the test expects there
        put(full, path, value)
    token = copy.deepcopy(full)
    del token["storage"]["s3"], token["auth"]["htpasswd"], token["proxy"]["upstreams"]
    basic = copy.deepcopy(full)
    del basic["storage"]["filesystem"], basic["auth"]["token"], basic["auth"]["tokenserver"]
    for key in ("remoteurl", "username", "password", "ttl"):
        del basic["proxy"][key]
    return {"filesystem+token+remoteurl": token, "s3+htpasswd+upstreams": basic}


def outcome(raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """Everything the readers make of ``raw``, or the error they raise."""
    served: dict[str, Any] = {}
    monkeypatch.setattr(standalone, "uvicorn", SimpleNamespace(run=lambda app, **kw: served.update(kw)))
    try:
        config = config_module.parse(raw)
        result: list[Any] = [config]
        result.append(parse_notifications(config.notifications))
        if config.http.tls.certificate:
            ssl_context(config.http.tls)
        if config.storage.driver == "s3":
            result.append(S3Parameters.parse(config.storage.parameters))
        else:
            driver = build_driver(config.storage.driver, config.storage.parameters)
            result.append((driver.root, driver.fsync))
            asyncio.run(driver.close())
        policy = policy_cache(open_database(config)) if config.auth.database is not None else None  # never opened
        result.append(type(factory.build_access_controller(config.auth, policy=policy)).__name__)
        result.append([route.path for route in factory.token_server_routes(config.auth, policy=policy)])
        if config.auth.tokenserver is not None:
            standalone.serve(config.auth, policy=policy)
            result.append(served)
        result.append(mirror_config.parse_proxy(config.proxy))
        result.append(config.replication.replication())
    except Exception as e:  # noqa: BLE001 - any error is an outcome
        return "error", f"{type(e).__name__}: {e}"
    return "ok", result


def test_example_parses_to_the_defaults() -> None:
    config = config_module.load(EXAMPLE, environ={})
    assert config == config_module.Config()


def test_uncommenting_touches_commented_settings_only() -> None:
    text = EXAMPLE.read_text()
    changed = [(a, b) for a, b in zip(text.splitlines(), uncommented(text).splitlines(), strict=True) if a != b]
    assert len(changed) > 80, "the commented-out settings were not recognised"
    for before, after in changed:
        assert before.lstrip().startswith("# ") and before.replace("# ", "", 1) == after, before
    full = full_example()
    assert {"auth", "proxy"} <= set(full) and "s3" in full["storage"]


def test_every_documented_key_is_read(variants: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    checked: set[str] = set()
    problems = []
    for name, raw in variants.items():
        baseline = outcome(raw, monkeypatch)
        assert baseline[0] == "ok", f"{name}: the uncommented example does not work: {baseline[1]}"
        for path in leaves(raw):
            key = dotted(path)
            if key in checked:
                continue
            checked.add(key)
            mutated = copy.deepcopy(raw)
            put(mutated, path, GARBAGE)
            result = outcome(mutated, monkeypatch)
            if key in IGNORED:
                assert result == baseline, f"{key}: documented as ignored, but it is read"
            elif result == baseline:
                problems.append(f"{key}: not read by Moorage (misspelled, or not a key it knows)")
            elif result[0] == "error" and result[1].startswith(("ConfigError", "ValueError")):
                if key not in result[1]:
                    problems.append(f"{key}: the error does not name the key: {result[1]}")
    assert not problems, "\n".join(problems)
    assert len(checked) > 90


def test_every_key_the_code_knows_is_documented() -> None:
    full = full_example()
    http, storage, auth, proxy = full["http"], full["storage"], full["auth"], full["proxy"]
    expected = {
        "": {"version", "log", "http", "storage", "validation", "auth", "database", "proxy", "notifications",
             "replication"},
        "log": {"level", "formatter", "fields", "accesslog", "audit"},
        "log.accesslog": {"disabled"},
        "log.audit": {"path"},
        "http": set(config_module.HTTPConfig.model_fields),
        "http.tls": set(config_module.TLSConfig.model_fields),
        "http.debug": {"addr", "prometheus"},
        "http.debug.prometheus": {"enabled", "path"},
        "http.metrics": {"enabled", "path"},
        "storage": set(config_module.StorageConfig.model_fields),
        "storage.filesystem": {"rootdirectory", "fsync"},
        "storage.s3": set(S3Parameters.model_fields),
        "storage.delete": {"enabled"},
        "storage.maintenance": {"readonly", "uploadpurging"},
        "storage.maintenance.uploadpurging": {"enabled", "age", "interval", "dryrun"},
        "storage.redirect": {"disable"},
        "validation": {"disabled", "manifests"},
        "validation.manifests.urls": {"allow", "deny"},
        "auth": set(settings.AuthSettings.model_fields),
        "auth.htpasswd": set(settings.HtpasswdSettings.model_fields),
        "auth.token": set(settings.TokenSettings.model_fields),
        "auth.tokenserver": set(settings.TokenServerSettings.model_fields),
        "auth.tokenserver.tls": {"certificate", "key"},
        "auth.access": {"groups", "admins", "catalog", "metrics", "rules"},
        "notifications": {"endpoints", "poll", "lease"},
        "database": {"url", "timeout"},
        "proxy": set(mirror_config.ProxyConfig.model_fields),
        "replication": set(replication_config.ReplicationSettings.model_fields),
    }
    for where, keys_ in expected.items():
        node = get(full, tuple(where.split("."))) if where else full
        assert keys_ <= set(node), f"{where or 'top level'}: not documented: {sorted(keys_ - set(node))}"
    assert http["tls"] and storage["s3"] and auth["access"]
    rule_keys = set().union(*(rule.keys() for rule in auth["access"]["rules"]))
    assert rule_keys == {"repositories", "who", "actions"}
    replication = full["replication"]
    assert set(replication_config.RemoteSettings.model_fields) == set().union(*map(set, replication["remotes"]))
    assert set(replication_config.RuleSettings.model_fields) == set().union(*map(set, replication["rules"]))
    assert set(replication_config.RetrySettings.model_fields) == set(replication["rules"][0]["retry"])
    assert set(replication_config.DestinationSettings.model_fields) == set(replication["rules"][0]["destination"])
    upstream_keys = set().union(*(u.keys() for u in proxy["upstreams"]))
    # remoteurl is documented at the top of proxy; in a list entry it is the same as url
    assert set(mirror_config.UpstreamSettings.model_fields) - {"remoteurl"} <= upstream_keys
