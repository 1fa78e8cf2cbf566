"""Config handling: what builds which controller, and errors that name the key at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auth import keys
from auth.base import AllowAll
from auth.basic import BasicController
from auth.bearer import BearerController
from auth.factory import build_access_controller, token_server_routes
from auth.scopes import parse_scope
from auth.settings import TokenDuration
from auth.standalone import token_server_app
from configkit import convert
from tests.auth.conftest import ISSUER, SERVICE, Signer


@pytest.fixture
def files(tmp_path: Path, signer: Signer, htpasswd_file: Path) -> dict[str, str]:
    (tmp_path / "token.key").write_bytes(signer.key_pem())
    (tmp_path / "token.crt").write_bytes(signer.pem())
    jwks = {"keys": [{**keys.public_jwk(signer.key.public_key()), "kid": "k1"}]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    (tmp_path / "junk").write_text("not a key")
    return {"key": str(tmp_path / "token.key"), "crt": str(tmp_path / "token.crt"),
            "jwks": str(tmp_path / "jwks.json"), "htpasswd": str(htpasswd_file), "junk": str(tmp_path / "junk"),
            "missing": str(tmp_path / "missing")}


def token_section(files: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"realm": "http://r/auth/token", "service": SERVICE, "issuer": ISSUER,
            "rootcertbundle": files["crt"], **extra}


def test_no_auth_allows_all() -> None:
    assert isinstance(build_access_controller({}), AllowAll)
    assert token_server_routes({}) == []


def test_htpasswd_and_token_controllers(files: dict[str, str]) -> None:
    assert isinstance(build_access_controller({"htpasswd": {"realm": "r", "path": files["htpasswd"]}}),
                      BasicController)
    bearer = build_access_controller({"token": token_section(files)})
    assert isinstance(bearer, BearerController) and bearer.rules is None
    jwks_only = build_access_controller({"token": token_section(files, rootcertbundle=None, jwks=files["jwks"])})
    assert "k1" in jwks_only.verifier.by_kid


def test_token_server_route_is_mounted_at_the_configured_path(files: dict[str, str]) -> None:
    auth = {"token": token_section(files), "tokenserver": {"key": files["key"], "htpasswd": files["htpasswd"],
                                                           "path": "/token"}}
    routes = token_server_routes(auth)
    assert [r.path for r in routes] == ["/token"]
    assert build_access_controller(auth).rules is not None


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"silly": {}}, "auth.silly: not supported"),
        ({"htpasswd": {"path": "{htpasswd}"}, "token": "{token}"}, "auth: configure either htpasswd or token"),
        ({"htpasswd": {"path": "{missing}"}}, "auth.htpasswd.path: file not found"),
        ({"htpasswd": {}}, "auth.htpasswd.path: expected a non-empty string"),
        ({"htpasswd": {"path": "{htpasswd}", "paht": 1}}, "auth.htpasswd.paht: unknown key"),
        ({"htpasswd": "x"}, "auth.htpasswd: expected a mapping"),
        ({"access": {}}, "auth: access needs auth.htpasswd, auth.ldap or auth.token"),
        ({"token": {"rootcertbundle": "{missing}"}}, "auth.token.rootcertbundle: file not found"),
        ({"token": {"rootcertbundle": "{junk}"}}, "auth.token.rootcertbundle: cannot load PEM"),
        ({"token": {"jwks": "{junk}"}}, "auth.token.jwks: cannot load a JWKS"),
        ({"token": {"rootcertbundle": None}}, "auth.token.rootcertbundle: required"),
        ({"token": {"issuer": None}}, "auth.token.issuer: expected a non-empty string"),
        ({"token": {"service": ""}}, "auth.token.service: expected a non-empty string"),
        ({"token": {"realm": None}}, "auth.token.realm: expected a non-empty string"),
        ({"token": {"signingalgorithms": ["HS256"]}}, "auth.token.signingalgorithms: 'HS256' not supported"),
        ({"token": {"signingalgorithms": ["none"]}}, "auth.token.signingalgorithms: 'none' not supported"),
        ({"token": {"autoredirect": "maybe"}}, "auth.token.autoredirect: expected true or false"),
        ({"token": {}, "tokenserver": {"key": "{missing}"}}, "auth.tokenserver.key: file not found"),
        ({"token": {}, "tokenserver": {"key": "{junk}"}}, "auth.tokenserver.key: cannot load"),
        ({"token": {}, "tokenserver": {"key": "{key}"}}, "auth.tokenserver.htpasswd: expected a non-empty"),
        ({"token": {}, "tokenserver": {"key": "{key}", "htpasswd": "{htpasswd}", "expiration": "5x"}},
         "auth.tokenserver.expiration: invalid duration"),
        ({"token": {}, "tokenserver": {"key": "{key}", "htpasswd": "{htpasswd}", "expiration": 0}},
         "auth.tokenserver.expiration: expected a positive duration"),
        ({"token": {}, "tokenserver": {"key": "{key}", "htpasswd": "{htpasswd}", "certificate": "{junk}"}},
         "auth.tokenserver.certificate: cannot load"),
        ({"token": {}, "tokenserver": {"key": "{key}", "htpasswd": "{htpasswd}", "port": 1}},
         "auth.tokenserver.port: unknown key"),
        ({"token": {}, "tokenserver": {"key": "{key}", "htpasswd": "{htpasswd}"},
          "access": {"rules": [{"repositories": "A", "who": "x", "actions": []}]}},
         r"auth.access.rules\[0\].repositories: bad pattern"),
    ],
)
def test_config_errors_name_the_key(files: dict[str, str], auth: dict[str, Any], message: str) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("{") and value.strip("{}") in files:
            return files[value.strip("{}")]
        if value == "{token}":
            return token_section(files)
        return value

    resolved: dict[str, Any] = {}
    for section, body in auth.items():
        if section == "token" and isinstance(body, dict):
            body = {k: v for k, v in {**token_section(files), **body}.items() if v is not None}
        resolved[section] = {k: fill(v) for k, v in body.items()} if isinstance(body, dict) else fill(body)
    with pytest.raises(ValueError, match=message):
        build_access_controller(resolved)
        token_server_routes(resolved)


def test_tokenserver_errors(files: dict[str, str], tmp_path: Path) -> None:
    other = Signer("ES256")
    (tmp_path / "other.crt").write_bytes(other.pem())
    server = {"key": files["key"], "htpasswd": files["htpasswd"], "certificate": str(tmp_path / "other.crt")}
    with pytest.raises(ValueError, match="auth.tokenserver.certificate: the certificate does not belong"):
        token_server_routes({"token": token_section(files), "tokenserver": server})
    with pytest.raises(ValueError, match="auth.tokenserver: needs auth.token"):
        token_server_routes({"htpasswd": {"path": files["htpasswd"]},
                             "tokenserver": {"key": files["key"], "htpasswd": files["htpasswd"]}})
    for path in ("/v2/token", "token"):
        with pytest.raises(ValueError, match="auth.tokenserver.path: must start with /"):
            token_server_routes({"token": token_section(files),
                                 "tokenserver": {"key": files["key"], "htpasswd": files["htpasswd"], "path": path}})


def test_jwks_with_a_symmetric_key_is_refused(tmp_path: Path, files: dict[str, str]) -> None:
    (tmp_path / "oct.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}))
    with pytest.raises(ValueError, match="auth.token.jwks: .*not an asymmetric key|auth.token.jwks: cannot load"):
        build_access_controller({"token": token_section(files, rootcertbundle=None,
                                                        jwks=str(tmp_path / "oct.json"))})


@pytest.mark.parametrize(("value", "seconds"), [("1h30m", 5400.0), ("5m", 300.0), (90, 90.0), ("1.5s", 1.5),
                                                ("250ms", 0.25)])
def test_durations(value: object, seconds: float) -> None:
    assert convert(TokenDuration, value, "k") == seconds


@pytest.mark.parametrize("value", ["", "5", "5d", "m", "-1s", True, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="^k: "):
        convert(TokenDuration, value, "k")


def test_scope_grammar() -> None:
    assert parse_scope("repository:host:5000/app:pull,push") == ("repository", "host:5000/app", ["pull", "push"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    for bad in ("", "repository", "repository:app", ":app:pull", "repository::pull", "repository:app:"):
        assert parse_scope(bad) is None


def test_standalone_app_needs_a_token_server(files: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="auth.tokenserver: not configured"):
        token_server_app({"token": token_section(files)})
    app = token_server_app({"token": token_section(files),
                            "tokenserver": {"key": files["key"], "htpasswd": files["htpasswd"]}})
    assert [r.path for r in app.routes] == ["/auth/token"]
