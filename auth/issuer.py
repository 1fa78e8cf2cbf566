"""Signs the registry tokens and refresh tokens handed out by the built-in token server.

Access tokens carry ``x5c`` (the signing certificate chain) when a certificate is configured, which
Distribution 2.x and 3.x both accept, otherwise ``kid`` = the key's RFC 7638 thumbprint. Refresh
tokens are JWTs for a different audience, so a registry never accepts one as an access token, and
carry a fingerprint of the user's password hash, so changing or removing the user revokes them.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from auth import keys
from auth.keys import PrivateKey

REFRESH_AUDIENCE_PREFIX = "moorage-refresh:"
SCOPE_CLAIM = "moorage_token"  # an access token's limits, for the registry's listings (auth.verifier)


@dataclass(frozen=True, slots=True)
class SignedToken:
    token: str
    issued_at: int
    expires_in: int


class TokenIssuer:
    def __init__(
        self, key: PrivateKey, issuer: str, service: str, expiration: float, refresh_expiration: float,
        chain: list[x509.Certificate] | None = None,
    ) -> None:
        self.key, self.alg = key, keys.algorithm_for(key)
        self.issuer, self.service = issuer, service
        self.expiration, self.refresh_expiration = int(expiration), int(refresh_expiration)
        if chain:
            if not keys.same_key(chain[0].public_key(), key.public_key()):  # type: ignore[arg-type]
                raise ValueError("the certificate does not belong to the signing key")
            der = (c.public_bytes(serialization.Encoding.DER) for c in chain)
            self.headers: dict[str, Any] = {"x5c": [base64.b64encode(d).decode() for d in der]}
        else:
            self.headers = {"kid": keys.thumbprint(key.public_key())}
        self.refresh_headers = {"kid": keys.thumbprint(key.public_key())}  # read only by this issuer

    def access_token(self, subject: str | None, access: list[dict[str, Any]],
                     scope: dict[str, Any] | None = None) -> SignedToken:
        """``scope``: the limits of the access token the caller logged in with (``Scope.claim``)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject or "", "aud": self.service, "exp": now + self.expiration,
            "nbf": now, "iat": now, "jti": secrets.token_urlsafe(16), "access": access,
        }
        if scope is not None:
            claims[SCOPE_CLAIM] = scope
        token = jwt.encode(claims, self.key, algorithm=self.alg, headers=self.headers)
        return SignedToken(token, now, self.expiration)

    def refresh_token(self, subject: str, password_tag: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": subject, "aud": REFRESH_AUDIENCE_PREFIX + self.service,
            "exp": now + self.refresh_expiration, "iat": now, "jti": secrets.token_urlsafe(16),
            "pwd": password_tag,
        }
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=self.refresh_headers)

    def read_refresh_token(self, token: str) -> tuple[str, str]:
        """``subject, password_tag`` of a refresh token this issuer signed; raise jwt.PyJWTError."""
        claims = jwt.decode(
            token, self.key.public_key(), algorithms=[self.alg], issuer=self.issuer,
            audience=REFRESH_AUDIENCE_PREFIX + self.service, options={"require": ["exp", "sub", "pwd"]},
        )
        if not isinstance(claims["sub"], str) or not isinstance(claims["pwd"], str):
            raise jwt.InvalidTokenError("bad refresh token claims")
        return claims["sub"], claims["pwd"]
