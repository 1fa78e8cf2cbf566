"""Loading the config: defaults, Distribution's keys, environment overrides, errors naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry import config


def test_config_defaults_and_distribution_keys(tmp_path) -> None:
    defaults = config.parse({})
    assert defaults.http.addr == "0.0.0.0:5000"
    assert defaults.storage.filesystem.rootdirectory == "./data"
    path = tmp_path / "config.yml"
    path.write_text(
        "version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
        "http: {addr: ':5001', host: 'https://r.example.test/', prefix: /reg, relativeurls: true}\n"
        "storage: {filesystem: {rootdirectory: /x}, delete: {enabled: false},"
        " maintenance: {readonly: {enabled: true}, uploadpurging: {age: 1h30m}}}\n"
    )
    loaded = config.load(path, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/override"})
    assert loaded.log_level == "warning" and not loaded.accesslog
    assert loaded.http.addr == ":5001" and loaded.http.host == "https://r.example.test"
    assert loaded.http.prefix == "/reg/" and loaded.http.relativeurls
    assert loaded.storage.filesystem.rootdirectory == "/override"
    assert not loaded.storage.delete_enabled and loaded.storage.readonly
    assert loaded.storage.upload_purge_age == 5400


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"http": {"addr": "nocolon"}}, "http.addr"),
        ({"storage": {"gcs": {}}}, "storage.gcs"),
        ({"storage": {"delete": {"enabled": "maybe"}}}, "storage.delete.enabled"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"http": {"tls": {"certificate": "/c"}}}, "http.tls"),
        ({"bogus": 1}, "bogus"),
        ({"storage": {"maintenance": {"uploadpurging": {"age": "10x"}}}}, "storage.maintenance.uploadpurging.age"),
        ({"http": {"tsl": {}}}, "http.tsl"),
        ({"http": {"net": "unix"}}, "http.net"),
        ({"http": {"tls": {"letsencrypt": {}}}}, "http.tls.letsencrypt"),
        ({"http": {"debug": {"adr": "x:1"}}}, "http.debug.adr"),
        ({"http": {"headers": {"X-Bad\nName": ["v"]}}}, "http.headers"),
        ({"storage": {"filesystem": {"rootdir": "/x"}}}, "storage.filesystem.rootdir"),
        ({"storage": {"maintenance": {"readonlymode": {"enabled": True}}}}, "storage.maintenance.readonlymode"),
        ({"validation": {"manifest": {}}}, "validation.manifest"),
    ],
)
def test_config_errors_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
        config.parse(raw)


def test_http_headers_go_on_every_api_response(tmp_path) -> None:
    from starlette.testclient import TestClient

    from registry.http.app import create_app

    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path)}},
           "http": {"headers": {"X-Content-Type-Options": ["nosniff"], "X-Team": "infra"}}}
    with TestClient(create_app(config.parse(raw))) as client:
        for response in (client.get("/v2/"), client.get("/v2/no/such/manifests/x")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-team"] == "infra"


def test_bad_yaml_file(tmp_path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("http: [unclosed")
    with pytest.raises(config.ConfigError, match="invalid YAML"):
        config.load(path, environ={})
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yml", environ={})


def test_http_workers_auto_is_one_per_usable_cpu() -> None:
    assert config.parse({}).http.workers == len(os.sched_getaffinity(0))  # auto by default
    assert config.parse({"http": {"workers": 3}}).http.workers == 3
    assert config.parse({"http": {"workers": "auto"}}).http.workers == len(os.sched_getaffinity(0))
    assert config.load(None, environ={"REGISTRY_HTTP_WORKERS": "auto"}).http.workers >= 1
    with pytest.raises(config.ConfigError, match="http.workers"):
        config.parse({"http": {"workers": "many"}})


@pytest.mark.parametrize("workers", [None, "auto"])
def test_http_workers_auto_is_one_process_for_single_sign_on_kept_in_memory(tmp_path: Path,
                                                                            workers: str | None) -> None:
    """auth.oidc without auth.database: the provider's logins live in the process that saw the callback,
    so a second worker would log the UI session out; auto serves from one process, a number is obeyed."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    oidc = {"issuer": "https://sso.example.test", "clientid": "moorage", "clientsecret": "s"}
    http = {} if workers is None else {"workers": workers}
    settings = {"http": http, "auth": {"htpasswd": {"path": str(htpasswd)}, "oidc": oidc}}
    parsed = config.parse(settings)
    assert parsed.http.workers == 1 and parsed.one_process_reason
    assert config.parse({**settings, "http": {"workers": 2}}).http.workers == 2
    database = {**settings["auth"], "database": {}}
    with_database = config.parse({"http": http, "auth": database,
                                  "storage": {"filesystem": {"rootdirectory": str(tmp_path)}}})
    assert with_database.http.workers == len(os.sched_getaffinity(0)) and not with_database.one_process_reason
