"""Login through an OpenID Connect provider (``auth.oidc``): the relying party's half of the authorization
code flow, for the web UI (``docker login`` cannot follow a browser flow: OIDC users use access tokens).

``start`` makes a login: a fresh ``state`` (ties the provider's answer to this browser), ``nonce`` (ties
the ID token to this login) and PKCE verifier (only this registry can redeem the code; S256), and the
provider's authorization URL. ``finish`` takes the provider's answer: the state must match, the code is
redeemed at the token endpoint with the client's secret and the verifier, and the ID token must verify
against the provider's published keys (JWKS) with an allowed algorithm, be issued by the configured
issuer, for this client, not expired, and carry the nonce. Any failure is a ``LoginRefused`` with a
message for the person logging in; a provider that cannot be reached is ``SourceUnavailable`` (503).

Authlib makes the PKCE challenge and random tokens; joserfc (Authlib's JOSE library) verifies signatures
and claims. Discovery and keys are fetched with httpx, each request bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from auth.credentials import Identity, SourceUnavailable, Verdict
from auth.htpasswd import check_user_name
from auth.settings import OidcSettings
from storage.database.records import ExternalRecord

log = logging.getLogger("moorage.auth.oidc")

METADATA_TTL = 3600.0  # discovery and keys are fetched again after an hour (or at once for an unknown kid)
LEEWAY = 60  # seconds of clock difference tolerated for exp/iat
LOGIN_TTL = 600.0  # a login started and not finished within this is refused
USED_STATES = 10_000


class LoginRefused(Exception):
    """The provider's answer does not log anyone in; the message says why, for the person logging in."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A login in progress, kept by the browser (in a signed cookie) until the provider sends it back."""

    state: str
    nonce: str
    verifier: str
    target: str  # the UI page to return to
    started: float  # wall-clock time

    def as_dict(self) -> dict[str, Any]:
        return {"s": self.state, "n": self.nonce, "v": self.verifier, "t": self.target, "at": self.started}

    @classmethod
    def from_dict(cls, data: Any) -> Pending | None:
        try:
            return cls(str(data["s"]), str(data["n"]), str(data["v"]), str(data["t"]), float(data["at"]))
        except (KeyError, TypeError, ValueError):
            return None


class OidcAccounts:
    """The users who logged in through the provider, as a source of the credential chain: they have no
    password here (``verify`` passes), but their UI sessions and teams are known (``current``).

    Kept in this process's memory: after a restart, or on another replica, an OIDC user logs in again
    (one click while their provider session lasts)."""

    kind = "oidc"

    def __init__(self, entries: int = 100_000) -> None:
        self.entries = entries
        self._users: OrderedDict[str, Identity] = OrderedDict()
        self._lock = threading.Lock()
        self.recorded: Callable[[str], Awaitable[ExternalRecord | None]] | None = None  # the database's

    def add(self, identity: Identity) -> None:
        with self._lock:
            self._users.pop(identity.name, None)
            self._users[identity.name] = identity
            while len(self._users) > self.entries:
                self._users.popitem(last=False)

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        return Verdict.UNKNOWN

    async def current(self, user: str) -> Identity | None:
        """From this process's logins, else from the database (a login on another replica, or before a
        restart)."""
        found = self._users.get(user)
        if found is None and self.recorded is not None:
            record = await self.recorded(user)
            if record is not None and record.source == self.kind:
                found = Identity(record.name, self.kind, record.teams, record.email, subject=record.subject)
        return found

    def stamp(self, user: str) -> str | None:
        return self.kind


class OpenIDConnect:
    def __init__(self, settings: OidcSettings, accounts: OidcAccounts,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.accounts = accounts
        self.clock = clock
        verify: ssl.SSLContext | bool = True
        if settings.cacertificate:
            verify = ssl.create_default_context(cafile=settings.cacertificate)
        self._http = httpx.AsyncClient(timeout=settings.timeout, verify=verify, follow_redirects=False)
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._used: OrderedDict[str, float] = OrderedDict()  # states already redeemed: no replays
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()

    # --- the flow -------------------------------------------------------------------------------------

    async def start(self, redirect_uri: str, target: str) -> tuple[str, Pending]:
        """The provider's authorization URL for a new login, and the login to keep until it answers."""
        metadata = await self.metadata()
        pending = Pending(generate_token(32), generate_token(32), generate_token(64), target, self.clock())
        query = {
            "response_type": "code", "client_id": self.settings.clientid, "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes), "state": pending.state, "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.verifier), "code_challenge_method": "S256",
        }
        endpoint = metadata["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}", pending

    async def finish(self, params: Mapping[str, str], pending: Pending | None, redirect_uri: str) -> Identity:
        """The identity the provider's answer (the callback's query ``params``) proves for ``pending``."""
        if pending is None or self.clock() - pending.started > LOGIN_TTL:
            raise LoginRefused("No login is in progress in this browser, or it took too long: start again.")
        if not secure_equal(params.get("state", ""), pending.state):
            raise LoginRefused("The answer does not belong to the login started in this browser (state mismatch).")
        self._redeem(pending.state)
        if "error" in params:
            detail = params.get("error_description") or params["error"]
            raise LoginRefused(f"The identity provider did not log you in: {detail}")
        code = params.get("code")
        if not code:
            raise LoginRefused("The identity provider's answer has no authorization code.")
        tokens = await self._redeem_code(code, pending.verifier, redirect_uri)
        claims = await self._verify_id_token(tokens.get("id_token"), pending.nonce)
        identity = self._identity(claims)
        self.accounts.add(identity)
        return identity

    # --- provider documents ---------------------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (cached for an hour); its issuer must be the configured one."""
        cached = self._metadata
        if cached is not None and self.clock() - cached[0] < METADATA_TTL:
            return cached[1]
        issuer = self.settings.issuer
        document = await self._get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        if document.get("issuer") != issuer:
            log.error("OIDC discovery of %s names issuer %r", issuer, document.get("issuer"))
            raise SourceUnavailable(f"the identity provider's discovery document names another issuer "
                                    f"({document.get('issuer')!r}; auth.oidc.issuer is {issuer!r})")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(key), str):
                raise SourceUnavailable(f"the identity provider's discovery document lacks {key}")
        self._metadata = (self.clock(), document)
        return document

    async def keys(self, refresh: bool = False) -> KeySet:
        cached = self._keys
        if cached is not None and not refresh and self.clock() - cached[0] < METADATA_TTL:
            return cached[1]
        async with self._lock:
            if self._keys is not None and self._keys is not cached:
                return self._keys[1]  # another login fetched them meanwhile
            jwks = await self._get_json((await self.metadata())["jwks_uri"])
            try:
                keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as e:
                raise SourceUnavailable(f"the identity provider's keys (JWKS) are unusable: {e}") from None
            self._keys = (self.clock(), keyset)
            return keyset

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as e:
            log.warning("OIDC provider unreachable at %s: %s", url, e)
            raise SourceUnavailable(f"the identity provider cannot be reached ({type(e).__name__})") from None
        if response.status_code != 200:
            raise SourceUnavailable(f"the identity provider answered {response.status_code} for {url}")
        try:
            document = response.json()
        except ValueError:
            raise SourceUnavailable(f"the identity provider sent no JSON at {url}") from None
        if not isinstance(document, dict):
            raise SourceUnavailable(f"the identity provider sent no JSON object at {url}")
        return document

    # --- checks -----------------------------------------------------------------------------------------

    def _redeem(self, state: str) -> None:
        """Each state logs in once: a replayed answer (a copied callback URL and cookie) is refused."""
        now = self.clock()
        while self._used and next(iter(self._used.values())) < now - LOGIN_TTL:
            self._used.popitem(last=False)
        if state in self._used:
            raise LoginRefused("This login was already used: start again.")
        self._used[state] = now
        while len(self._used) > USED_STATES:
            self._used.popitem(last=False)

    async def _redeem_code(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        endpoint = (await self.metadata())["token_endpoint"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        try:
            response = await self._http.post(endpoint, data=form,
                                             auth=(self.settings.clientid, self.settings.clientsecret))
        except httpx.HTTPError as e:
            log.warning("OIDC token endpoint unreachable: %s", e)
            raise SourceUnavailable(f"the identity provider cannot be reached ({type(e).__name__})") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict):
            reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            log.warning("OIDC code redemption refused: %s %s", response.status_code, reason)
            if response.status_code >= 500:
                raise SourceUnavailable(f"the identity provider answered {response.status_code}")
            raise LoginRefused(f"The identity provider refused the login: {reason or response.status_code}")
        return body

    async def _verify_id_token(self, token: Any, nonce: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise LoginRefused("The identity provider sent no ID token.")
        algorithms = self.settings.algorithms
        try:
            try:
                decoded = jwt.decode(token, await self.keys(), algorithms=algorithms)
            except InvalidKeyIdError:  # an unknown kid: the provider may have rotated its keys
                decoded = jwt.decode(token, await self.keys(refresh=True), algorithms=algorithms)
            registry = jwt.JWTClaimsRegistry(
                now=lambda: int(self.clock()), leeway=LEEWAY, iss={"essential": True, "value": self.settings.issuer},
                sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                nonce={"essential": True, "value": nonce})
            registry.validate(decoded.claims)
        except (BadSignatureError, InvalidKeyIdError, ValueError) as e:
            log.warning("OIDC ID token refused: bad signature (%s)", e)
            raise LoginRefused("The ID token's signature does not verify: it was altered or is not from "
                               "the configured identity provider.") from None
        except UnsupportedAlgorithmError:
            log.warning("OIDC ID token refused: algorithm not in %s", algorithms)
            raise LoginRefused("The ID token is signed with an algorithm this registry does not accept.") from None
        except ExpiredTokenError:
            raise LoginRefused("The ID token has expired: log in again.") from None
        except (InvalidClaimError, MissingClaimError) as e:
            log.warning("OIDC ID token refused: %s", e)
            raise LoginRefused(claim_message(e)) from None
        except JoseError as e:
            log.warning("OIDC ID token refused: %s", e)
            raise LoginRefused(f"The ID token is not valid ({e.error}).") from None
        claims = dict(decoded.claims)
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        client = self.settings.clientid
        if client not in audiences or (len(audiences) > 1 and claims.get("azp") != client):
            log.warning("OIDC ID token refused: audience %r", audience)
            raise LoginRefused("The ID token was issued for another application (audience).")
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        s = self.settings
        raw = claims.get(s.usernameclaim)
        if not isinstance(raw, str) or not raw:
            raise LoginRefused(f"The identity provider sent no {s.usernameclaim!r} claim (auth.oidc.usernameclaim).")
        try:
            name = check_user_name(raw.lower())
        except ValueError as e:
            raise LoginRefused(f"Your user name cannot be used here: {e}") from None
        groups = claims.get(s.groups.claim) or []
        names = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        subject = f"{s.issuer}#{claims['sub']}"
        return Identity(name, OidcAccounts.kind, s.groups.teams([(g, g) for g in names]), email, subject=subject)


def claim_message(error: JoseError) -> str:
    claim = getattr(error, "claim", "")
    messages = {
        "nonce": "The ID token was not issued for this login (nonce mismatch): start again.",
        "iss": "The ID token comes from another issuer than the configured identity provider.",
        "iat": "The ID token's issue time is not valid.",
        "sub": "The ID token names no subject.",
        "exp": "The ID token has no expiry.",
    }
    return messages.get(claim, f"The ID token is not valid ({error}).")


def secure_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
