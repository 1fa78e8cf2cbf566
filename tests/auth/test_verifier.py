"""Bearer token verification, including the refusal list of the auth issue."""

from __future__ import annotations

import base64
import datetime
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from auth import keys
from auth.base import Access
from auth.verifier import TokenError, TokenVerifier
from tests.auth.conftest import ISSUER, SERVICE, Signer, TokenFactory, certificate, claims, der_b64


@pytest.fixture
def verifier(signer: Signer) -> TokenVerifier:
    return TokenVerifier(ISSUER, SERVICE, [signer.cert])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_x5c_token_is_accepted_with_its_access(verifier: TokenVerifier, make_token: TokenFactory) -> None:
    verified = verifier.verify(make_token())
    assert verified.subject == "alice"
    assert verified.accesses == {Access("repository", "team/app", "pull"),
                                 Access("repository", "team/app", "push")}


def test_anonymous_token_has_no_subject(verifier: TokenVerifier, make_token: TokenFactory) -> None:
    assert verifier.verify(make_token(sub="")).subject is None


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_other_key_types(alg: str) -> None:
    other = Signer(alg)
    token = jwt.encode(claims(), other.key, algorithm=alg, headers={"x5c": [der_b64(other.cert)]})
    assert TokenVerifier(ISSUER, SERVICE, [other.cert]).verify(token).subject == "alice"


def test_leaf_signed_by_a_bundle_ca_and_through_an_intermediate(ec_key) -> None:
    root_key, mid_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate(root_key, "root")
    mid = certificate(mid_key, "mid", root_key, "root")
    leaf = certificate(ec_key, "leaf", mid_key, "mid", ca=False)
    direct = certificate(ec_key, "leaf", root_key, "root", ca=False)
    verifier = TokenVerifier(ISSUER, SERVICE, [root])
    for chain in ([leaf, mid], [leaf, mid, root], [direct]):
        token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"x5c": [der_b64(c) for c in chain]})
        assert verifier.verify(token).subject == "alice"
    with pytest.raises(TokenError, match="does not lead"):  # intermediate missing
        verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"x5c": [der_b64(leaf)]}))


def test_intermediate_that_is_not_a_ca_is_refused(ec_key) -> None:
    root_key, mid_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate(root_key, "root")
    mid = certificate(mid_key, "mid", root_key, "root", ca=False)
    leaf = certificate(ec_key, "leaf", mid_key, "mid", ca=False)
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"x5c": [der_b64(leaf), der_b64(mid)]})
    with pytest.raises(TokenError, match="does not lead"):
        TokenVerifier(ISSUER, SERVICE, [root]).verify(token)


def test_expired_certificate_is_refused(ec_key) -> None:
    old = certificate(ec_key, "old", start=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"x5c": [der_b64(old)]})
    with pytest.raises(TokenError, match="validity"):
        TokenVerifier(ISSUER, SERVICE, [old]).verify(token)


def test_kid_as_thumbprint_libtrust_id_or_jwks_key_id(signer: Signer, make_token: TokenFactory) -> None:
    verifier = TokenVerifier(ISSUER, SERVICE, [signer.cert])
    pub = signer.key.public_key()
    for kid in (keys.thumbprint(pub), keys.libtrust_key_id(pub)):
        assert verifier.verify(make_token(header={"kid": kid})).subject == "alice"
    jwk = jwt.PyJWK({**keys.public_jwk(pub), "kid": "key-2026"})
    from_jwks = TokenVerifier(ISSUER, SERVICE, jwks=[jwk])
    assert from_jwks.verify(make_token(header={"kid": "key-2026"})).subject == "alice"
    with pytest.raises(TokenError, match="untrusted key id"):
        from_jwks.verify(make_token(header={"kid": "key-2025"}))


def test_libtrust_key_id_format(signer: Signer) -> None:
    kid = keys.libtrust_key_id(signer.key.public_key())
    assert len(kid) == 59 and kid.count(":") == 11 and kid.replace(":", "").isalnum()


def test_embedded_jwk_must_be_a_trusted_key(verifier: TokenVerifier, signer: Signer, make_token, ec_key) -> None:
    trusted = keys.public_jwk(signer.key.public_key())
    assert verifier.verify(make_token(header={"jwk": trusted})).subject == "alice"
    untrusted = keys.public_jwk(ec_key.public_key())
    with pytest.raises(TokenError, match="untrusted jwk"):
        verifier.verify(make_token(header={"jwk": untrusted}, key=ec_key))


def test_alg_none_is_refused(verifier: TokenVerifier, signer: Signer) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "x5c": [der_b64(signer.cert)]}).encode())
    body = b64url(json.dumps(claims()).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        with pytest.raises(TokenError):
            verifier.verify(token)


def test_hs256_signed_with_the_public_key_is_refused(verifier: TokenVerifier, signer: Signer) -> None:
    """Key confusion: the attacker HMACs with the (public) certificate or key bytes."""
    public_pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = json.dumps({"alg": "HS256", "typ": "JWT", "x5c": [der_b64(signer.cert)]}).encode()
    body = json.dumps(claims()).encode()
    import hashlib
    import hmac
    for secret in (public_pem, signer.pem()):
        signing_input = f"{b64url(header)}.{b64url(body)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(TokenError, match="not accepted"):
            verifier.verify(f"{signing_input}.{b64url(mac)}")
    # even when an operator lists HS256, a public key never serves as an HMAC secret
    loose = TokenVerifier(ISSUER, SERVICE, [signer.cert], algorithms=["HS256", "ES256"])
    with pytest.raises(TokenError, match="does not fit"):
        loose.verify(f"{signing_input}.{b64url(mac)}")


def test_algorithm_must_fit_the_key(verifier: TokenVerifier, signer: Signer) -> None:
    rsa = Signer("RS256")
    token = jwt.encode(claims(), rsa.key, algorithm="RS256", headers={"x5c": [der_b64(signer.cert)]})
    with pytest.raises(TokenError, match="does not fit"):
        verifier.verify(token)


def test_key_not_in_the_bundle_is_refused(verifier: TokenVerifier, ec_key) -> None:
    stranger = certificate(ec_key, "test signer")  # same subject as the trusted one, other key
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"x5c": [der_b64(stranger)]})
    with pytest.raises(TokenError, match="does not lead"):
        verifier.verify(token)
    with pytest.raises(TokenError, match="untrusted key id"):
        verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256",
                                   headers={"kid": keys.thumbprint(ec_key.public_key())}))


def test_trusted_x5c_but_signed_by_another_key_is_refused(verifier: TokenVerifier, make_token, ec_key) -> None:
    with pytest.raises(TokenError, match="Signature verification failed"):
        verifier.verify(make_token(key=ec_key))


def test_no_key_in_header_and_garbage(verifier: TokenVerifier, make_token: TokenFactory) -> None:
    with pytest.raises(TokenError, match="names no signing key"):
        verifier.verify(make_token(header={}))
    for bad in ("", "abc", "a.b.c", "e30.e30.", make_token() + "x"):
        with pytest.raises(TokenError):
            verifier.verify(bad)
    for x5c in ("notalist", [], ["%%%"], [1], ["A" * 8] * 11):
        with pytest.raises(TokenError, match="x5c"):
            verifier.verify(make_token(header={"x5c": x5c}))


def test_time_claims_with_60s_leeway(verifier: TokenVerifier, make_token: TokenFactory) -> None:
    now = int(time.time())
    assert verifier.verify(make_token(exp=now - 30)).subject == "alice"
    assert verifier.verify(make_token(nbf=now + 30, iat=now)).subject == "alice"
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(make_token(exp=now - 90))
    with pytest.raises(TokenError, match="not yet valid"):
        verifier.verify(make_token(nbf=now + 90, iat=now))
    with pytest.raises(TokenError, match="exp"):
        verifier.verify(make_token(exp=None))


def test_issuer_and_audience_must_match(verifier: TokenVerifier, make_token: TokenFactory) -> None:
    with pytest.raises(TokenError, match="issuer"):
        verifier.verify(make_token(iss="someone-else"))
    with pytest.raises(TokenError, match="(?i)aud"):
        verifier.verify(make_token(aud="other-registry"))
    with pytest.raises(TokenError, match="(?i)aud"):
        verifier.verify(make_token(aud=None))
    assert verifier.verify(make_token(aud=["other", SERVICE])).subject == "alice"


@pytest.mark.parametrize(
    "access", [{"type": "repository"}, ["x"], [{"type": 1, "name": "a", "actions": []}],
               [{"type": "repository", "name": "a", "actions": "pull"}],
               [{"type": "repository", "name": "a", "actions": [1]}]],
)
def test_malformed_access_claims_are_refused(verifier: TokenVerifier, make_token, access) -> None:
    with pytest.raises(TokenError, match="access claim"):
        verifier.verify(make_token(access=access))


def test_signing_algorithms_restrict(signer: Signer, make_token: TokenFactory) -> None:
    only_rsa = TokenVerifier(ISSUER, SERVICE, [signer.cert], algorithms=["RS256"])
    with pytest.raises(TokenError, match="not accepted"):
        only_rsa.verify(make_token())
