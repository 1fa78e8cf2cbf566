"""Verifies registry Bearer tokens the way Distribution does.

The signing key comes from the JOSE header: an ``x5c`` chain that must lead to a certificate of
the root bundle, a ``jwk`` whose RFC 7638 thumbprint is trusted, or a ``kid`` naming a trusted
key (RFC 7638 thumbprint or libtrust ID of a bundle key, or a JWKS key id). Only asymmetric
algorithms that fit the key are accepted, so ``alg: none`` and HMAC-with-a-public-key fail.
Claims: ``iss`` and ``aud`` must match, ``exp``/``nbf``/``iat`` hold with 60 s leeway. The built-in
token server adds ``moorage_token`` when the caller logged in with an access token: its scope, which
the registry's listings are cut to; a malformed one refuses the token.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from auth import keys
from auth.base import Access
from auth.credentials import Scope
from auth.issuer import SCOPE_CLAIM
from auth.keys import PublicKey

log = logging.getLogger("moorage.auth")

LEEWAY_SECONDS = 60
MAX_CHAIN = 10
CHAIN_CACHE_ENTRIES = 256


class TokenError(Exception):
    """The token is not acceptable; the message is safe to log (it never contains the token)."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    subject: str | None
    accesses: frozenset[Access]
    scope: Scope | None = None  # the access token the subject logged in with (built-in token server)


def as_public(key: Any) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
                  | ed448.Ed448PrivateKey):
        key = key.public_key()
    if not isinstance(key, PublicKey):
        raise TokenError(f"unsupported key type {type(key).__name__}")
    return key


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        roots: Iterable[x509.Certificate] = (),
        jwks: Iterable[jwt.PyJWK] = (),
        algorithms: Iterable[str] = keys.ASYMMETRIC_ALGORITHMS,
    ) -> None:
        self.issuer, self.audience = issuer, audience
        self.algorithms = frozenset(algorithms)
        self.roots = list(roots)
        self._root_der = {c.public_bytes(keys.serialization.Encoding.DER) for c in self.roots}
        self.by_kid: dict[str, PublicKey] = {}
        self.by_thumbprint: dict[str, PublicKey] = {}
        for cert in self.roots:
            pub = as_public(cert.public_key())
            self.by_thumbprint[keys.thumbprint(pub)] = pub
            self.by_kid[keys.thumbprint(pub)] = pub
            self.by_kid[keys.libtrust_key_id(pub)] = pub
        for jwk in jwks:
            pub = as_public(jwk.key)
            self.by_thumbprint[keys.thumbprint(pub)] = pub
            if jwk.key_id:
                self.by_kid[jwk.key_id] = pub
        self._chains: dict[tuple[str, ...], tuple[PublicKey, datetime.datetime]] = {}

    def verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenError("malformed token") from e
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenError(f"signing algorithm {alg!r} not accepted")
        key = self._signing_key(header)
        if not keys.fits(key, alg):
            raise TokenError(f"algorithm {alg} does not fit the signing key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise TokenError(f"token rejected: {e}") from e
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise TokenError("sub claim is not a string")
        scope = None
        if SCOPE_CLAIM in claims:
            try:
                scope = Scope.from_claim(claims[SCOPE_CLAIM])
            except ValueError as e:
                raise TokenError(str(e)) from None
        return VerifiedToken(subject or None, parse_access(claims.get("access", [])), scope)

    def _signing_key(self, header: dict[str, Any]) -> PublicKey:
        if "x5c" in header:
            return self._chain_key(header["x5c"])
        if "jwk" in header:
            return self._jwk_key(header["jwk"])
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            key = self.by_kid.get(kid)
            if key is None:
                raise TokenError(f"token signed by untrusted key id {kid!r}")
            return key
        raise TokenError("token header names no signing key (x5c, jwk or kid)")

    def _jwk_key(self, raw: Any) -> PublicKey:
        if not isinstance(raw, dict):
            raise TokenError("jwk header is not an object")
        try:
            key = as_public(jwt.PyJWK(raw).key)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as e:
            raise TokenError("unusable jwk header") from e
        if "x5c" in raw:
            chained = self._chain_key(raw["x5c"])
            if not keys.same_key(chained, key):
                raise TokenError("jwk key differs from its x5c certificate")
            return key
        trusted = self.by_thumbprint.get(keys.thumbprint(key))
        if trusted is None:
            raise TokenError("token signed by an untrusted jwk")
        return trusted

    def _chain_key(self, x5c: Any) -> PublicKey:
        """The leaf key of an ``x5c`` chain that ends in (or at) a root bundle certificate."""
        if not isinstance(x5c, list) or not x5c or len(x5c) > MAX_CHAIN:
            raise TokenError("x5c header is not a list of 1 to 10 certificates")
        if not all(isinstance(c, str) for c in x5c):
            raise TokenError("x5c header holds a non-string")
        now = datetime.datetime.now(datetime.UTC)
        cached = self._chains.get(tuple(x5c))
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except (binascii.Error, ValueError) as e:
            raise TokenError("x5c header holds an unparsable certificate") from e
        anchored = self._anchor(chain, now)
        expires = min(c.not_valid_after_utc for c in [*chain, anchored])
        if len(self._chains) >= CHAIN_CACHE_ENTRIES:
            self._chains.clear()
        key = as_public(chain[0].public_key())
        self._chains[tuple(x5c)] = (key, expires)
        return key

    def _anchor(self, chain: list[x509.Certificate], now: datetime.datetime) -> x509.Certificate:
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise TokenError("x5c certificate outside its validity period")
        for i, cert in enumerate(chain):
            if cert.public_bytes(keys.serialization.Encoding.DER) in self._root_der:
                return cert
            for root in self.roots:
                if is_ca(root) and issued_by(cert, root):
                    if not root.not_valid_before_utc <= now <= root.not_valid_after_utc:
                        raise TokenError("root certificate outside its validity period")
                    return root
            if i + 1 == len(chain) or not (is_ca(chain[i + 1]) and issued_by(cert, chain[i + 1])):
                break
        raise TokenError("x5c chain does not lead to the root certificate bundle")


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def parse_access(raw: Any) -> frozenset[Access]:
    """The ``access`` claim: ``[{type, name, actions: [...]}]``."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise TokenError("access claim is not a list")
    accesses = set()
    for entry in raw:
        if not isinstance(entry, dict):
            raise TokenError("access claim entry is not an object")
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions") or []
        if not (isinstance(type_, str) and isinstance(name, str) and isinstance(actions, list)):
            raise TokenError("access claim entry needs string type and name and a list of actions")
        for action in actions:
            if not isinstance(action, str):
                raise TokenError("access claim action is not a string")
            accesses.add(Access(type_, name, action))
    return frozenset(accesses)
