"""Builds the access controller and the token server routes from the ``auth`` config section.

Keys: Distribution's ``htpasswd`` {realm, path} and ``token`` {realm, service, issuer,
rootcertbundle, jwks, signingalgorithms, autoredirect, autoredirectpath}; Moorage's ``access``
(rules, see auth.rules) and ``tokenserver`` {path, htpasswd, key, certificate, expiration,
refreshexpiration, addr, tls}. Every error names the key at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from starlette.requests import Request
from starlette.routing import BaseRoute

from auth import keys, settings
from auth.base import AccessController, AllowAll
from auth.basic import BasicController
from auth.bearer import BearerController
from auth.brake import build_brake
from auth.htpasswd import Htpasswd
from auth.issuer import TokenIssuer
from auth.rules import DEFAULT_ACCESS, AccessRules
from auth.tokenserver import TokenServer, peer_address
from auth.verifier import TokenVerifier

SECTIONS = ("htpasswd", "token", "access", "tokenserver", "brake")
HTPASSWD_KEYS = ("realm", "path")
TOKEN_KEYS = ("realm", "service", "issuer", "rootcertbundle", "jwks", "signingalgorithms",
              "autoredirect", "autoredirectpath")
TOKENSERVER_KEYS = ("path", "htpasswd", "key", "certificate", "expiration", "refreshexpiration",
                    "addr", "tls")
DEFAULT_TOKEN_PATH = "/auth/token"
DEFAULT_EXPIRATION = 300.0
DEFAULT_REFRESH_EXPIRATION = 90 * 24 * 3600.0


def build_access_controller(auth: Mapping[str, Any]) -> AccessController:
    """``auth`` is the raw config section; raise ValueError naming the key when it is wrong."""
    if not auth:
        return AllowAll()
    check_sections(auth)
    if "htpasswd" in auth and "token" in auth:
        raise ValueError("auth: configure either htpasswd or token, not both")
    if "htpasswd" in auth:
        section = settings.mapping(auth, "auth.htpasswd", HTPASSWD_KEYS)
        path = settings.existing_file(section.get("path"), "auth.htpasswd.path")
        realm = settings.text(section.get("realm", "moorage"), "auth.htpasswd.realm")
        return BasicController(realm, Htpasswd(path), access_rules(auth), build_brake(auth.get("brake")))
    if "token" in auth:
        token = settings.mapping(auth, "auth.token", TOKEN_KEYS)
        rules = access_rules(auth) if ("access" in auth or "tokenserver" in auth) else None
        redirect = settings.flag(token.get("autoredirect", False), "auth.token.autoredirect")
        redirect_path = settings.text(token.get("autoredirectpath", DEFAULT_TOKEN_PATH),
                                      "auth.token.autoredirectpath")
        return BearerController(
            settings.text(token.get("realm"), "auth.token.realm"),
            settings.text(token.get("service"), "auth.token.service"),
            verifier(token), rules, redirect_path if redirect else None,
        )
    raise ValueError(f"auth: {', '.join(auth)} needs auth.htpasswd or auth.token")


def token_server_routes(auth: Mapping[str, Any], address: Callable[[Request], str] = peer_address
                        ) -> list[BaseRoute]:
    """Routes the registry mounts at the top level; empty unless ``auth.tokenserver`` is set.
    This is also where the ``tokenserver`` section is checked.  ``address`` tells a request's client
    address (for the brute-force brake)."""
    if not auth or "tokenserver" not in auth:
        return []
    check_sections(auth)
    server = settings.mapping(auth, "auth.tokenserver", TOKENSERVER_KEYS)
    path = settings.text(server.get("path", DEFAULT_TOKEN_PATH), "auth.tokenserver.path")
    if not path.startswith("/") or path.startswith("/v2"):
        raise ValueError(f"auth.tokenserver.path: must start with / and not with /v2, got {path!r}")
    return token_server(auth, address).routes(path)


def token_server(auth: Mapping[str, Any], address: Callable[[Request], str] = peer_address) -> TokenServer:
    token = settings.mapping(auth, "auth.token", TOKEN_KEYS)
    if not token:
        raise ValueError("auth.tokenserver: needs auth.token (service and issuer of the tokens)")
    server = settings.mapping(auth, "auth.tokenserver", TOKENSERVER_KEYS)
    key = keys.load_private_key(settings.existing_file(server.get("key"), "auth.tokenserver.key"),
                                "auth.tokenserver.key")
    chain = None
    if server.get("certificate"):
        cert_path = settings.existing_file(server["certificate"], "auth.tokenserver.certificate")
        chain = keys.load_certificates(cert_path, "auth.tokenserver.certificate")
    try:
        issuer = TokenIssuer(
            key,
            settings.text(token.get("issuer"), "auth.token.issuer"),
            settings.text(token.get("service"), "auth.token.service"),
            settings.seconds(server.get("expiration", DEFAULT_EXPIRATION), "auth.tokenserver.expiration"),
            settings.seconds(server.get("refreshexpiration", DEFAULT_REFRESH_EXPIRATION),
                             "auth.tokenserver.refreshexpiration"),
            chain,
        )
    except ValueError as e:
        if str(e).startswith("auth."):
            raise
        raise ValueError(f"auth.tokenserver.certificate: {e}") from e
    users = Htpasswd(settings.existing_file(server.get("htpasswd"), "auth.tokenserver.htpasswd"))
    return TokenServer(issuer, users, access_rules(auth), build_brake(auth.get("brake")), address)


def verifier(token: Mapping[str, Any]) -> TokenVerifier:
    roots = []
    if token.get("rootcertbundle"):
        path = settings.existing_file(token["rootcertbundle"], "auth.token.rootcertbundle")
        roots = keys.load_certificates(path, "auth.token.rootcertbundle")
    jwks = []
    if token.get("jwks"):
        jwks = load_jwks(settings.existing_file(token["jwks"], "auth.token.jwks"), "auth.token.jwks")
    if not roots and not jwks:
        raise ValueError("auth.token.rootcertbundle: required (or auth.token.jwks)")
    algorithms = keys.ASYMMETRIC_ALGORITHMS
    if "signingalgorithms" in token:
        algorithms = tuple(settings.texts(token["signingalgorithms"], "auth.token.signingalgorithms"))
        for alg in algorithms:
            if alg not in keys.ASYMMETRIC_ALGORITHMS:
                known = ", ".join(keys.ASYMMETRIC_ALGORITHMS)
                raise ValueError(f"auth.token.signingalgorithms: {alg!r} not supported (one of {known})")
    return TokenVerifier(
        settings.text(token.get("issuer"), "auth.token.issuer"),
        settings.text(token.get("service"), "auth.token.service"),
        roots, jwks, algorithms,
    )


def load_jwks(path: Path, key: str) -> list[jwt.PyJWK]:
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text())
    except (jwt.PyJWTError, ValueError, OSError) as e:
        raise ValueError(f"{key}: cannot load a JWKS from {path}: {e}") from e
    for jwk in keyset.keys:
        if jwk.key_type not in ("EC", "RSA", "OKP"):
            raise ValueError(f"{key}: key {jwk.key_id!r} of type {jwk.key_type} is not an asymmetric key")
    return list(keyset.keys)


def access_rules(auth: Mapping[str, Any]) -> AccessRules:
    raw = auth.get("access")
    return AccessRules(DEFAULT_ACCESS if raw is None else raw)


def check_sections(auth: Mapping[str, Any]) -> None:
    for name in auth:
        if name not in SECTIONS:
            raise ValueError(f"auth.{name}: not supported (known: {', '.join(SECTIONS)})")
