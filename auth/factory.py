"""Builds the access controller and the token server routes from the ``auth`` settings (auth.settings):
here the files the settings name are opened, and each error names the key at fault."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from starlette.requests import Request
from starlette.routing import BaseRoute

from auth import keys
from auth.base import AccessController, AllowAll
from auth.basic import BasicController
from auth.bearer import BearerController
from auth.brake import build_brake
from auth.htpasswd import Htpasswd
from auth.issuer import TokenIssuer
from auth.rules import DEFAULT_ACCESS, AccessRules
from auth.settings import AuthSettings, TokenSettings
from auth.tokenserver import TokenServer, peer_address
from auth.verifier import TokenVerifier
from configkit import ConfigError, existing_file

Auth = AuthSettings | Mapping[str, Any]  # the settings, or the raw section (checked here)


def build_access_controller(auth: Auth) -> AccessController:
    """No ``auth`` section: everyone may do everything."""
    settings = AuthSettings.parse(auth)
    settings.check_complete()
    if settings.htpasswd:
        path = existing_file(settings.htpasswd.path, "auth.htpasswd.path")
        return BasicController(settings.htpasswd.realm, Htpasswd(path), access_rules(settings),
                               build_brake(settings.brake))
    if settings.token:
        token = settings.token
        rules = access_rules(settings) if (settings.access or settings.tokenserver) else None
        return BearerController(token.realm, token.service, verifier(token), rules,
                                token.autoredirectpath if token.autoredirect else None)
    return AllowAll()


def token_server_routes(auth: Auth, address: Callable[[Request], str] = peer_address) -> list[BaseRoute]:
    """Routes the registry mounts at the top level; empty unless ``auth.tokenserver`` is set. ``address``
    tells a request's client address (for the brute-force brake)."""
    settings = AuthSettings.parse(auth)
    if settings.tokenserver is None:
        return []
    settings.check_complete()
    return token_server(settings, address).routes(settings.tokenserver.path)


def token_server(settings: AuthSettings, address: Callable[[Request], str] = peer_address) -> TokenServer:
    server, token = settings.tokenserver, settings.token
    assert server is not None and token is not None  # AuthSettings: a token server needs auth.token
    key = keys.load_private_key(existing_file(server.key, "auth.tokenserver.key"), "auth.tokenserver.key")
    chain = None
    if server.certificate:
        cert_path = existing_file(server.certificate, "auth.tokenserver.certificate")
        chain = keys.load_certificates(cert_path, "auth.tokenserver.certificate")
    try:
        issuer = TokenIssuer(key, token.issuer, token.service, server.expiration, server.refreshexpiration, chain)
    except ValueError as e:
        raise ConfigError(f"auth.tokenserver.certificate: {e}") from e
    users = Htpasswd(existing_file(server.htpasswd, "auth.tokenserver.htpasswd"))
    return TokenServer(issuer, users, access_rules(settings), build_brake(settings.brake), address)


def verifier(token: TokenSettings) -> TokenVerifier:
    roots = []
    if token.rootcertbundle:
        path = existing_file(token.rootcertbundle, "auth.token.rootcertbundle")
        roots = keys.load_certificates(path, "auth.token.rootcertbundle")
    jwks = []
    if token.jwks:
        jwks = load_jwks(existing_file(token.jwks, "auth.token.jwks"), "auth.token.jwks")
    algorithms = keys.ASYMMETRIC_ALGORITHMS
    if token.signingalgorithms is not None:
        algorithms = tuple(token.signingalgorithms)
        for alg in algorithms:
            if alg not in keys.ASYMMETRIC_ALGORITHMS:
                known = ", ".join(keys.ASYMMETRIC_ALGORITHMS)
                raise ConfigError(f"auth.token.signingalgorithms: {alg!r} not supported (one of {known})")
    return TokenVerifier(token.issuer, token.service, roots, jwks, algorithms)


def load_jwks(path: Path, key: str) -> list[jwt.PyJWK]:
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text())
    except (jwt.PyJWTError, ValueError, OSError) as e:
        raise ConfigError(f"{key}: cannot load a JWKS from {path}: {e}") from e
    for jwk in keyset.keys:
        if jwk.key_type not in ("EC", "RSA", "OKP"):
            raise ConfigError(f"{key}: key {jwk.key_id!r} of type {jwk.key_type} is not an asymmetric key")
    return list(keyset.keys)


def access_rules(settings: AuthSettings) -> AccessRules:
    return AccessRules(DEFAULT_ACCESS if settings.access is None else settings.access)
