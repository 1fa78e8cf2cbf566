"""Builds the access controller and the token server routes from the ``auth`` settings (auth.settings):
here the files the settings name are opened, and each error names the key at fault."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import BaseRoute

from auth.base import AccessController, AllowAll, peer_address
from auth.basic import BasicController
from auth.brake import build_brake
from auth.credentials import Credentials, CredentialSource, HtpasswdSource
from auth.htpasswd import Htpasswd
from auth.policy import DatabasePolicy, PolicySnapshot
from auth.rules import DEFAULT_ACCESS, AccessRules
from auth.settings import AccessSettings, AccessTokenSettings, AuthSettings, TokenSettings
from configkit import ConfigError, existing_file
from storage.database import Cached

if TYPE_CHECKING:
    import jwt

    from auth.oidc import OpenIDConnect
    from auth.tokens import AccessTokens
    from auth.tokenserver import TokenServer
    from auth.verifier import TokenVerifier
    from storage.database import Database

Auth = AuthSettings | Mapping[str, Any]  # the settings, or the raw section (checked here)


def build_credentials(auth: Auth, policy: Cached[PolicySnapshot] | None = None) -> Credentials:
    """The chain every login path asks (auth.credentials): the database's users of ``auth.database``
    (``policy``: the registry's snapshot of it), the htpasswd file of ``auth.htpasswd`` or of
    ``auth.tokenserver``, then the directory of ``auth.ldap``; empty when nobody can log in."""
    settings = AuthSettings.parse(auth)
    sources: list[CredentialSource] = []
    accounts = None
    if settings.database is not None:
        if policy is None:
            raise ConfigError("auth.database: needs the registry's database (moorage serve, moorage token-server)")
        from auth.database_users import DatabaseUsers  # SQLAlchemy only for configs with a database

        accounts = DatabaseUsers(policy)  # first: a user disabled here is refused whatever else knows the name
        sources.append(accounts)
    if settings.htpasswd:
        sources.append(HtpasswdSource(Htpasswd(existing_file(settings.htpasswd.path, "auth.htpasswd.path"))))
    elif settings.tokenserver and settings.tokenserver.htpasswd:
        path = existing_file(settings.tokenserver.htpasswd, "auth.tokenserver.htpasswd")
        sources.append(HtpasswdSource(Htpasswd(path)))
    if settings.ldap:
        from auth.directory import Directory  # ldap3 is loaded only by configs that use it

        if settings.ldap.cacertificate:
            existing_file(settings.ldap.cacertificate, "auth.ldap.cacertificate")
        sources.append(Directory(settings.ldap))
    if settings.oidc:
        from auth.oidc import OidcAccounts

        sources.append(OidcAccounts())
    if accounts is not None:
        accounts.last = len(sources) == 1
    return Credentials(sources, build_brake(settings.brake) if sources else None)


def build_oidc(auth: Auth, credentials: Credentials) -> OpenIDConnect | None:
    """The web UI's OpenID Connect login (``auth.oidc``), recording its users in ``credentials``' chain."""
    settings = AuthSettings.parse(auth)
    if settings.oidc is None:
        return None
    from auth.oidc import OidcAccounts, OpenIDConnect

    if settings.oidc.cacertificate:
        existing_file(settings.oidc.cacertificate, "auth.oidc.cacertificate")
    accounts = next(s for s in credentials.sources if isinstance(s, OidcAccounts))
    return OpenIDConnect(settings.oidc, accounts)


def build_access_tokens(auth: Auth, database: Database | None, access: AccessController,
                        credentials: Credentials, policy: Cached[PolicySnapshot] | None = None) -> AccessTokens | None:
    """Personal access tokens and robots (auth.tokens) in ``database``, asked first by the credential
    chain, and the users of ``auth.ldap`` and ``auth.oidc`` kept there (auth.accounts); None without a
    database or without logins (no auth, or tokens from an external issuer).  ``policy``: auth.database's,
    reloaded when a login records a new user (their web UI session is bound to the user it holds)."""
    settings = AuthSettings.parse(auth)
    if database is None or not credentials.enabled:
        return None
    from auth.tokens import AccessTokens

    rules = getattr(access, "rules", None)
    tokens = AccessTokens(database, AccessTokenSettings.parse(settings.accesstokens), access.actions,
                          file_admin=rules.is_admin if rules is not None else (lambda user: False))
    credentials.add_first(tokens)
    if settings.ldap or settings.oidc:
        from auth.accounts import ExternalAccounts
        from auth.oidc import OidcAccounts

        accounts = ExternalAccounts(database, policy)
        credentials.arrivals.append(accounts.arrived)
        credentials.memberships.recorded = accounts.teams
        for source in credentials.sources:
            if isinstance(source, OidcAccounts):
                source.recorded = accounts.record
    return tokens


def build_access_controller(auth: Auth, credentials: Credentials | None = None,
                            policy: Cached[PolicySnapshot] | None = None) -> AccessController:
    """No ``auth`` section: everyone may do everything. ``credentials``: the chain to share with the
    other login paths (built here when not given); ``policy``: the database's, with ``auth.database``."""
    settings = AuthSettings.parse(auth)
    settings.check_complete()
    if settings.mode in ("htpasswd", "ldap", "database"):
        credentials = credentials or build_credentials(settings, policy)
        realm = settings.htpasswd.realm if settings.htpasswd else "moorage"
        return BasicController(realm, credentials, access_rules(settings, credentials, policy))
    if settings.token:
        from auth.bearer import BearerController  # PyJWT and cryptography only for configs with tokens

        token = settings.token
        credentials = credentials or build_credentials(settings, policy)
        rules = None
        if settings.access or settings.tokenserver or settings.database:
            rules = access_rules(settings, credentials, policy)
        return BearerController(token.realm, token.service, verifier(token), rules,
                                token.autoredirectpath if token.autoredirect else None)
    return AllowAll()


def token_server_routes(auth: Auth, address: Callable[[Request], str] = peer_address,
                        credentials: Credentials | None = None,
                        policy: Cached[PolicySnapshot] | None = None) -> list[BaseRoute]:
    """Routes the registry mounts at the top level; empty unless ``auth.tokenserver`` is set. ``address``
    tells a request's client address (for the brute-force brake)."""
    settings = AuthSettings.parse(auth)
    if settings.tokenserver is None:
        return []
    settings.check_complete()
    return token_server(settings, address, credentials, policy).routes(settings.tokenserver.path)


def token_server(settings: AuthSettings, address: Callable[[Request], str] = peer_address,
                 credentials: Credentials | None = None,
                 policy: Cached[PolicySnapshot] | None = None) -> TokenServer:
    from auth import keys
    from auth.issuer import TokenIssuer
    from auth.tokenserver import TokenServer

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
    credentials = credentials or build_credentials(settings, policy)
    if not credentials.enabled:
        existing_file(server.htpasswd, "auth.tokenserver.htpasswd")  # names the missing key
    return TokenServer(issuer, credentials, access_rules(settings, credentials, policy), address)


def verifier(token: TokenSettings) -> TokenVerifier:
    from auth import keys
    from auth.verifier import TokenVerifier

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
    import jwt

    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text())
    except (jwt.PyJWTError, ValueError, OSError) as e:
        raise ConfigError(f"{key}: cannot load a JWKS from {path}: {e}") from e
    for jwk in keyset.keys:
        if jwk.key_type not in ("EC", "RSA", "OKP"):
            raise ConfigError(f"{key}: key {jwk.key_id!r} of type {jwk.key_type} is not an asymmetric key")
    return list(keyset.keys)


def access_rules(settings: AuthSettings, credentials: Credentials,
                 policy: Cached[PolicySnapshot] | None = None) -> AccessRules | DatabasePolicy:
    """The rules, with ``team:NAME`` resolved through the teams the chain saw each user in; with
    ``auth.database``, the file's rules in front of the database's policy (auth/policy.py), and without
    ``auth.access`` no file rules at all (the database decides)."""
    if settings.database is None:
        return AccessRules(DEFAULT_ACCESS if settings.access is None else settings.access,
                           teams=credentials.memberships.teams)
    if policy is None:
        raise ConfigError("auth.database: needs the registry's database (moorage serve, moorage token-server)")
    directory = credentials.memberships.teams

    def teams(user: str) -> frozenset[str]:
        snapshot = policy.peek()
        return directory(user) | (snapshot.teams_of(user) if snapshot is not None else frozenset())

    rules = AccessRules(AccessSettings() if settings.access is None else settings.access, teams=teams)
    return DatabasePolicy(rules, policy, teams=directory)
