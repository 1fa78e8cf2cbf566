"""The Basic (htpasswd + rules) and Bearer controllers, called as the core calls them."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from auth.base import Access, AuthFailure, Grant
from auth.basic import BasicController, basic_credentials
from auth.bearer import BearerController
from auth.credentials import Credentials, HtpasswdSource
from auth.htpasswd import Htpasswd
from auth.rules import DEFAULT_ACCESS, AccessRules
from auth.verifier import TokenVerifier
from tests.auth.conftest import ISSUER, SERVICE, Signer, TokenFactory

PULL = [Access("repository", "team/app", "pull")]
PUSH = [Access("repository", "team/app", "pull"), Access("repository", "team/app", "push")]
CATALOG = [Access("registry", "catalog", "*")]
PUBLIC_PULL = {
    "admins": ["alice"],
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ],
}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def authorize(controller, headers: dict[str, str], wanted: list[Access]) -> Grant:
    return asyncio.run(controller.authorize(headers, wanted))


def refusal(controller, headers: dict[str, str], wanted: list[Access]) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        authorize(controller, headers, wanted)
    return info.value


@pytest.fixture
def distribution_like(htpasswd_file: Path) -> BasicController:
    return BasicController("test-realm", Credentials([HtpasswdSource(Htpasswd(htpasswd_file))]),
                           AccessRules(DEFAULT_ACCESS))


@pytest.fixture
def public_pull(htpasswd_file: Path) -> BasicController:
    return BasicController("test-realm", Credentials([HtpasswdSource(Htpasswd(htpasswd_file))]),
                           AccessRules(PUBLIC_PULL))


class TestBasic:
    def test_base_endpoint_needs_valid_credentials(self, distribution_like: BasicController) -> None:
        failure = refusal(distribution_like, {}, [])
        assert (failure.status, failure.code) == (401, "UNAUTHORIZED")
        assert failure.challenge == 'Basic realm="test-realm"'
        assert authorize(distribution_like, basic("alice", "alice-pw"), []).subject == "alice"

    def test_by_default_authenticated_users_may_do_everything(self, distribution_like) -> None:
        grant = authorize(distribution_like, basic("bob", "bob-pw"), PUSH + CATALOG)
        assert grant.subject == "bob" and set(grant.accesses) == set(PUSH + CATALOG)
        assert refusal(distribution_like, {}, PULL).status == 401

    @pytest.mark.parametrize(
        "headers",
        [basic("alice", "wrong"), basic("nobody", "alice-pw"), {"authorization": "Basic !!!"},
         {"authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
         {"authorization": "Bearer abc"}, {"authorization": "Basic"}],
    )
    def test_bad_credentials_are_401_even_where_anonymous_would_pass(self, public_pull, headers) -> None:
        failure = refusal(public_pull, headers, PULL)
        assert (failure.status, failure.challenge) == (401, 'Basic realm="test-realm"')
        assert failure.message == "invalid username or password"

    def test_anonymous_pull_but_push_asks_for_credentials(self, public_pull: BasicController) -> None:
        assert authorize(public_pull, {}, PULL).subject is None
        assert authorize(public_pull, {"authorization": "Basic Og=="}, PULL).subject is None  # empty ":"
        assert refusal(public_pull, {"authorization": "Basic Og=="}, []).status == 401
        failure = refusal(public_pull, {}, PUSH)
        assert failure.status == 401 and failure.challenge
        assert failure.detail == [{"Type": "repository", "Name": "team/app", "Action": "push"}]

    def test_authenticated_but_not_allowed_is_denied(self, public_pull: BasicController) -> None:
        failure = refusal(public_pull, basic("bob", "bob-pw"), PUSH)
        assert (failure.status, failure.code, failure.challenge) == (403, "DENIED", None)
        assert authorize(public_pull, basic("bob", "bob-pw"), [Access("repository", "bob/x", "push")])

    def test_mount_needs_pull_on_the_source(self, public_pull: BasicController) -> None:
        wanted = [Access("repository", "bob/x", "push"), Access("repository", "carol/y", "pull")]
        assert authorize(public_pull, basic("bob", "bob-pw"), wanted)
        rules = AccessRules({"rules": [{"repositories": "bob/**", "who": "bob", "actions": "*"}]})
        strict = BasicController("r", public_pull.credentials, rules)
        assert refusal(strict, basic("bob", "bob-pw"), wanted).status == 403

    def test_admin_grant_covers_everything_and_catalog_filter(self, public_pull: BasicController) -> None:
        admin = authorize(public_pull, basic("alice", "alice-pw"), CATALOG)
        assert admin.everything
        assert asyncio.run(public_pull.may_list(admin, "bob/secret"))
        bob = authorize(public_pull, basic("bob", "bob-pw"), CATALOG)
        assert not bob.everything
        assert asyncio.run(public_pull.may_list(bob, "carol/x"))  # anyone may pull **
        private = BasicController("r", public_pull.credentials, AccessRules({"rules": [
            {"repositories": "{user}/**", "who": "authenticated", "actions": "*"}]}))
        bob = authorize(private, basic("bob", "bob-pw"), CATALOG)
        assert asyncio.run(private.may_list(bob, "bob/x"))
        assert not asyncio.run(private.may_list(bob, "alice/x"))
        assert refusal(private, {}, CATALOG).status == 401

    def test_credentials_parsing(self) -> None:
        assert basic_credentials("basic " + base64.b64encode(b"u:p:q").decode()) == ("u", "p:q")
        assert basic_credentials("Basic " + base64.b64encode(b":p").decode()) is None
        assert basic_credentials("Basic " + base64.b64encode(b"\xff:p").decode()) is None
        assert basic_credentials(None) is None


@pytest.fixture
def bearer(signer: Signer) -> BearerController:
    return BearerController("https://auth.test/token", SERVICE, TokenVerifier(ISSUER, SERVICE, [signer.cert]))


def bearer_header(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class TestBearer:
    def test_no_token_gets_a_challenge_with_the_scope(self, bearer: BearerController) -> None:
        failure = refusal(bearer, {}, PUSH)
        assert failure.status == 401 and failure.code == "UNAUTHORIZED"
        assert failure.challenge == (
            'Bearer realm="https://auth.test/token",service="test-registry",scope="repository:team/app:pull,push"'
        )
        assert refusal(bearer, {}, []).challenge == 'Bearer realm="https://auth.test/token",service="test-registry"'
        assert refusal(bearer, {"authorization": "Basic eDp5"}, []).status == 401

    def test_token_covering_the_request_passes(self, bearer: BearerController, make_token: TokenFactory) -> None:
        grant = authorize(bearer, bearer_header(make_token()), PUSH)
        assert grant.subject == "alice" and not grant.everything
        assert authorize(bearer, bearer_header(make_token()), []).subject == "alice"

    def test_token_for_repo_a_is_refused_on_repo_b(self, bearer: BearerController, make_token) -> None:
        other = [Access("repository", "team/other", "pull")]
        failure = refusal(bearer, bearer_header(make_token()), other)
        assert failure.status == 401
        assert failure.challenge.endswith('scope="repository:team/other:pull",error="insufficient_scope"')

    def test_actions_beyond_the_grant_are_refused(self, bearer: BearerController, make_token) -> None:
        pull_only = make_token(access=[{"type": "repository", "name": "team/app", "actions": ["pull"]}])
        assert refusal(bearer, bearer_header(pull_only), PUSH).challenge.endswith('error="insufficient_scope"')
        delete = [Access("repository", "team/app", "delete")]
        assert refusal(bearer, bearer_header(make_token()), delete).status == 401
        assert refusal(bearer, bearer_header(make_token()), CATALOG).status == 401

    def test_star_action_covers_everything_on_that_resource(self, bearer, make_token) -> None:
        token = make_token(access=[{"type": "repository", "name": "team/app", "actions": ["*"]},
                                   {"type": "registry", "name": "catalog", "actions": ["*"]}])
        assert authorize(bearer, bearer_header(token), [*PUSH, Access("repository", "team/app", "delete"),
                                                        *CATALOG])
        assert refusal(bearer, bearer_header(token), [Access("repository", "team/x", "pull")])

    def test_invalid_token_says_so(self, bearer: BearerController, make_token, ec_key) -> None:
        for token in ("garbage", make_token(key=ec_key), make_token(iss="evil")):
            failure = refusal(bearer, bearer_header(token), PULL)
            assert failure.challenge.endswith('error="invalid_token"')

    def test_autoredirect_uses_the_origin(self, signer: Signer) -> None:
        verifier = TokenVerifier(ISSUER, SERVICE, [signer.cert])
        controller = BearerController("ignored", SERVICE, verifier, autoredirect_path="/auth/token")
        for origin in ("https://reg.test:5000", "http://192.168.1.5:5000"):
            with pytest.raises(AuthFailure) as info:
                asyncio.run(controller.authorize({"host": "spoofed"}, [], lambda o=origin: o))
            assert info.value.challenge.startswith(f'Bearer realm="{origin}/auth/token"')

    def test_catalog_filter(self, bearer: BearerController, make_token, signer: Signer) -> None:
        grant = Grant(subject="bob")
        assert asyncio.run(bearer.may_list(grant, "anything"))  # external token server: no local rules
        rules = AccessRules({"rules": [{"repositories": "{user}/**", "who": "authenticated", "actions": "pull"}]})
        local = BearerController("r", SERVICE, TokenVerifier(ISSUER, SERVICE, [signer.cert]), rules)
        assert asyncio.run(local.may_list(grant, "bob/x"))
        assert not asyncio.run(local.may_list(grant, "alice/x"))
        assert not asyncio.run(local.may_list(Grant(), "bob/x"))
