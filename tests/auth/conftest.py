"""Keys, certificates, htpasswd files and a token factory for the auth tests."""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auth import keygen
from auth.keys import PrivateKey
from tests.ldapserver import Slapd, own_slapd

ISSUER = "test-issuer"
SERVICE = "test-registry"


def bcrypt_line(user: str, password: str, cost: int = 4) -> str:
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}"


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def certificate(
    key: PrivateKey, name: str, issuer_key: PrivateKey | None = None, issuer_name: str | None = None,
    ca: bool = True, days: int = 30, start: datetime.datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``key`` signed by ``issuer_key`` (self-signed when None)."""
    start = start or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


class Signer:
    """A signing key with its self-signed certificate, as `moorage auth keygen` makes them."""

    def __init__(self, alg: str = "ES256") -> None:
        self.key = keygen.generate_key(alg)
        self.alg = alg
        self.cert = keygen.self_signed(self.key, "test signer", 30)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def claims(access: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now, "iat": now,
        "jti": "x", "access": access if access is not None else [
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
        ],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


API_RULES = {
    "admins": ["alice"],
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["public/**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ],
}

TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer("ES256")


@pytest.fixture
def make_token(signer: Signer) -> TokenFactory:
    """``make_token(access=..., header=..., key=..., alg=..., **claims)``; x5c of ``signer`` by default."""

    def make(
        access: list[dict[str, Any]] | None = None, header: dict[str, Any] | None = None,
        key: Any = None, alg: str | None = None, **overrides: Any,
    ) -> str:
        headers = header if header is not None else {"x5c": [der_b64(signer.cert)]}
        return jwt.encode(claims(access, **overrides), key if key is not None else signer.key,
                          algorithm=alg or signer.alg, headers=headers)

    return make


@pytest.fixture
def htpasswd_file(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    path.write_text(bcrypt_line("alice", "alice-pw") + "\n" + bcrypt_line("bob", "bob-pw") + "\n")
    return path


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def token_auth_section(directory: Path, signer: Signer, htpasswd: Path, access: dict[str, Any],
                       realm: str = "http://registry.test/auth/token", **tokenserver: Any) -> dict[str, Any]:
    """An ``auth`` section for token auth with the built-in token server: ``signer``'s key and certificate
    written into ``directory``, users from ``htpasswd``; ``tokenserver`` adds keys (e.g. expiration)."""
    (directory / "token.key").write_bytes(signer.key_pem())
    (directory / "token.crt").write_bytes(signer.pem())
    return {
        "token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(directory / "token.crt")},
        "tokenserver": {"key": str(directory / "token.key"), "certificate": str(directory / "token.crt"),
                        "htpasswd": str(htpasswd), **tokenserver},
        "access": access,
    }


@pytest.fixture
def token_auth(tmp_path: Path, signer: Signer, htpasswd_file: Path) -> dict[str, Any]:
    return token_auth_section(tmp_path, signer, htpasswd_file, API_RULES)


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """One directory for the tests that do not stop it or change its groups for good."""
    yield from own_slapd()
