"""Interop: Distribution 2.8.2 configured with Moorage's certificate as `rootcertbundle` accepts the
tokens of Moorage's token server, run alone (`moorage token-server`); real docker login/push/pull.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from auth import keys
from tests.auth.e2e_support import (
    ISSUER,
    SERVICE,
    USERS,
    AuthFiles,
    assert_refused,
    auth_port,
    login,
    run_token_server,
    write_auth_files,
)

from .clients import Docker
from .helpers import unique
from .images import ImageFactory
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e


class TokenServer:
    def __init__(self, url: str, files: AuthFiles) -> None:
        self.url, self.files = url, files

    def token(self, *scopes: str, user: str = "alice") -> str:
        params = [("service", SERVICE), *[("scope", s) for s in scopes]]
        r = httpx.get(self.url, params=params, auth=(user, USERS[user]), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["token"]


@pytest.fixture
def token_server(moorage_bin: str, tmp_path: Path) -> Iterator[TokenServer]:
    """`moorage token-server CONFIG` on its own port, with the shared e2e rules."""
    files = write_auth_files(tmp_path / "auth")
    with run_token_server(moorage_bin, files, tmp_path) as url:
        yield TokenServer(url, files)


@pytest.fixture
def distribution(start_distribution: ServerFactory, token_server: TokenServer) -> RegistryProcess:
    token = {"realm": token_server.url, "service": SERVICE, "issuer": ISSUER,
             "rootcertbundle": str(token_server.files.cert)}
    return start_distribution({"auth": {"token": token}}, port=auth_port())


def push_blob(registry: RegistryProcess, repo: str, data: bytes, token: str) -> httpx.Response:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry.http() as c:
        headers = {"Authorization": f"Bearer {token}"}
        start = c.post(f"/v2/{repo}/blobs/uploads/", headers=headers)
        if start.status_code != 202:
            return start
        location = start.headers["Location"]
        location += ("&" if "?" in location else "?") + f"digest={digest}"  # keeps Distribution's _state
        return c.put(location, content=data, headers=headers)


def test_distribution_accepts_moorage_tokens(distribution: RegistryProcess, token_server: TokenServer) -> None:
    token = token_server.token("repository:alice/app:pull,push")
    assert push_blob(distribution, "alice/app", b"interop", token).status_code == 201
    other = push_blob(distribution, "alice/other", b"interop", token)
    assert other.status_code == 401
    assert 'error="insufficient_scope"' in other.headers["www-authenticate"]
    pull_only = token_server.token("repository:alice/app:pull")
    assert push_blob(distribution, "alice/app", b"more", pull_only).status_code == 401
    denied = token_server.token("repository:alice/app:pull,push", user="bob")  # empty grant for bob
    assert push_blob(distribution, "alice/app", b"more", denied).status_code == 401


def test_distribution_accepts_the_libtrust_kid_form(distribution: RegistryProcess,
                                                    token_server: TokenServer) -> None:
    """A token naming its key by `kid` (libtrust key ID, as Distribution 2.x computes it from the
    bundle) instead of `x5c`: proves our key ID matches Go's, and that the bundle key is what counts."""
    key = keys.load_private_key(token_server.files.key, "key")
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now, "iat": now,
              "jti": unique("jti"), "access": [{"type": "repository", "name": "alice/kid", "actions": ["push", "pull"]}]}
    good = jwt.encode(claims, key, algorithm="ES256", headers={"kid": keys.libtrust_key_id(key.public_key())})
    assert push_blob(distribution, "alice/kid", b"kid", good).status_code == 201
    stranger = keys.load_private_key(write_auth_files(token_server.files.key.parent / "other").key, "key")
    forged = jwt.encode(claims, stranger, algorithm="ES256",
                        headers={"kid": keys.libtrust_key_id(key.public_key())})
    assert push_blob(distribution, "alice/kid", b"kid", forged).status_code == 401


def test_docker_against_distribution_with_moorage_token_server(
    distribution: RegistryProcess, docker: Docker, images: ImageFactory
) -> None:
    img = images.docker_archive(f"e2e/{unique('interop')}:1", layers=[images.layer()])
    docker.load(img.path)
    own, foreign = distribution.ref("alice/app", "1"), distribution.ref("bob/app", "1")
    docker.tag(img.tag, own)
    docker.tag(img.tag, foreign)
    assert_refused(login(docker, distribution.host, "alice", "wrong"))
    assert login(docker, distribution.host, "alice", USERS["alice"]).returncode == 0
    digest, _ = docker.push(own)  # uses the identity (refresh) token: POST grant_type=refresh_token
    assert_refused(docker("push", foreign, check=False))
    docker.rmi(own)
    docker.pull(own)
    assert docker.repo_digest(own) == digest
    docker("logout", distribution.host)
    docker.rmi(own)
    assert_refused(docker("pull", own, check=False))
