"""registry.http.server without a running server: TLS contexts, addresses, the plain-HTTP credentials warning,
and the deployment files (nginx config, compose files, systemd unit, image config) parse."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry import config as config_module
from registry.config import Config, ConfigError, TLSConfig
from registry.http.server import is_loopback, split_addr, ssl_context, warn_plain_http_credentials
from tests.deploy.support import DEPLOY_DOCS, REPO, Certs, Nginx, shipped_nginx_site


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("certs"))


def test_split_addr() -> None:
    assert split_addr(":5000") == ("0.0.0.0", 5000)
    assert split_addr("[::1]:5000") == ("::1", 5000)
    assert split_addr("127.0.0.1:15600") == ("127.0.0.1", 15600)


def test_ssl_context_minimum_and_client_cas(certs: Certs) -> None:
    tls = TLSConfig(certificate=str(certs.server_cert), key=str(certs.server_key),
                    clientcas=[str(certs.ca), str(certs.other_ca)], minimumtls="tls1.3")
    context = ssl_context(tls)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 2
    plain = ssl_context(TLSConfig(certificate=str(certs.server_cert), key=str(certs.server_key)))
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2 and plain.verify_mode == ssl.CERT_NONE


def test_ssl_context_bad_files_are_config_errors(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http.tls"):
        ssl_context(TLSConfig(certificate=str(certs.server_cert), key=str(tmp_path / "missing.key")))


def test_draintimeout_key() -> None:
    assert config_module.parse({}).http.draintimeout == 30.0
    assert config_module.parse({"http": {"draintimeout": "2m"}}).http.draintimeout == 120.0
    with pytest.raises(ConfigError, match="http.draintimeout"):
        config_module.parse({"http": {"draintimeout": "soon"}})


def make_config(http: dict[str, Any], auth: dict[str, Any] | None, tmp_path: Path) -> Config:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    default_auth = {"htpasswd": {"realm": "r", "path": str(htpasswd)}}
    return config_module.parse({"http": http, "auth": default_auth if auth is None else auth})


@pytest.mark.parametrize(
    ("http", "auth", "warns"),
    [
        ({"addr": ":5000"}, None, True),
        ({"addr": "192.168.1.10:5000"}, None, True),
        ({"addr": "[::]:5000"}, None, True),
        ({"addr": "127.0.0.1:5000"}, None, False),
        ({"addr": "[::1]:5000"}, None, False),
        ({"addr": "localhost:5000"}, None, False),
        ({"addr": ":5000"}, {}, False),
        ({"addr": ":5000", "trustedproxies": ["10.0.0.0/8"]}, None, False),
        ({"addr": ":5000", "host": "https://registry.example.com"}, None, False),
        ({"addr": ":5000", "host": "http://registry.example.com"}, None, True),
    ],
)
def test_plain_http_credentials_warning(http: dict[str, Any], auth: dict[str, Any] | None, warns: bool,
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(http, auth, tmp_path)
    with caplog.at_level(logging.WARNING, logger="moorage"):
        warn_plain_http_credentials(config, split_addr(config.http.addr)[0])
    assert ("unencrypted" in caplog.text) is warns, caplog.text


def test_no_warning_with_tls(certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config({"addr": ":5000", "tls": {"certificate": str(certs.server_cert),
                                                   "key": str(certs.server_key)}}, None, tmp_path)
    with caplog.at_level(logging.WARNING, logger="moorage"):
        warn_plain_http_credentials(config, "0.0.0.0")
    assert caplog.text == ""


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("ip6-localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("registry.lan")


# ----------------------------------------------------------------------------------- shipped files


def test_image_config_loads() -> None:
    config = config_module.load(DEPLOY_DOCS / "docker" / "config.yml", environ={})
    assert config.storage.filesystem.rootdirectory == "/var/lib/registry"
    assert split_addr(config.http.addr) == ("0.0.0.0", 5000)
    assert config.http.debug_addr == "127.0.0.1:5001"


def example_configs() -> list[Path]:
    return sorted(DEPLOY_DOCS.glob("*/config*.yml"))


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: str(p.relative_to(DEPLOY_DOCS)))
def test_example_configs_parse(path: Path) -> None:
    """Every example config is valid for Moorage (files they name need not exist here)."""
    config_module.parse(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", sorted(DEPLOY_DOCS.glob("*/docker-compose.yml")),
                         ids=lambda p: str(p.relative_to(DEPLOY_DOCS)))
def test_compose_files(path: Path) -> None:
    """Each compose file is YAML with a moorage service built from the repository's Dockerfile."""
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    assert any("moorage" in name for name in services), services
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (path.parent / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() \
                == REPO / "Dockerfile", name


def test_shipped_nginx_config_is_valid(certs: Certs, tmp_path: Path) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx not installed")
    Nginx(tmp_path / "nginx", shipped_nginx_site(15699, "127.0.0.1:15698", certs)).check()
    text = (DEPLOY_DOCS / "nginx" / "moorage.conf").read_text()
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;",
                      "X-Forwarded-Proto $scheme;", "X-Forwarded-Host $http_host;"):
        assert directive in text


def test_systemd_unit() -> None:
    unit = DEPLOY_DOCS / "systemd" / "moorage.service"
    text = unit.read_text()
    assert "ExecStart=/opt/moorage/bin/moorage serve /etc/moorage/config.yml" in text
    analyze = shutil.which("systemd-analyze")
    if analyze:
        p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
        assert "Unknown key" not in p.stderr and "Invalid" not in p.stderr, p.stderr
