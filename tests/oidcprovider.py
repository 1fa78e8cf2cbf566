"""A small but real OpenID Connect provider for the tests, on Authlib's server side (Flask).

Discovery, JWKS (an RS256 key per instance), the authorization code flow with PKCE S256 required of every
client, an HTML login form (user name and password), ID tokens with ``nonce``, and a ``groups`` claim for
the ``groups`` scope. It runs on a thread of the test process, on a free loopback port.

``mischief`` makes the token endpoint misbehave as an attacker or a broken provider would, to test the
relying party: ``tamper`` (a changed payload under the original signature), ``nonce`` (a valid signature
over another nonce), ``expired``, ``issuer`` (another issuer), ``audience`` (another client), ``none``
(an unsigned token, ``alg: none``), ``hs256`` (signed with the public key as an HMAC secret) and ``down``
(the provider stops right after sending the browser back with a code).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import flask
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from authlib.oidc.core.models import AuthorizationCodeMixin
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

MISCHIEF = ("tamper", "nonce", "expired", "issuer", "audience", "none", "hs256", "down")


@dataclass
class User:
    username: str
    password: str
    email: str = ""
    groups: list[str] = field(default_factory=list)


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile", "email", "groups"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


class S256Required(CodeChallenge):
    """PKCE for every client (Authlib requires it of public clients only), S256 only."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with S256 is required")
        super().validate_code_challenge(grant, redirect_uri)


LOGIN_FORM = """<!doctype html><title>Sign in</title>
<h1>Sign in to {client}</h1>{error}
<form method="post" action="{action}">
  <label>Username <input name="username" autocomplete="username" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button name="action" value="login">Sign in</button>
  <button name="action" value="deny">Cancel</button>
</form>"""


class OneRequestPerConnection(WSGIRequestHandler):
    """No keep-alive: once stopped, the provider is unreachable for every client, as one that is down."""

    protocol_version = "HTTP/1.0"


class Provider:
    def __init__(self, users: list[User], clients: list[Client]) -> None:
        self.users = {u.username: u for u in users}
        self.clients = {c.client_id: c for c in clients}
        self.codes: dict[str, Code] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
        self.mischief: str | None = None
        self.token_requests = 0
        self._server: Any = None
        self.port = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> flask.Flask:
        op = self
        app = flask.Flask(__name__)
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 300}

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                op.codes[code] = Code(code, request.client.client_id, request.payload.redirect_uri, request.scope,
                                      request.user.username, data.get("nonce"), data.get("code_challenge"),
                                      data.get("code_challenge_method"), int(time.time()), time.time() + 60)

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                item = op.codes.get(code)
                if item and item.client_id == client.client_id and time.time() < item.expires_at:
                    return item
                return None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                op.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> User | None:
                return op.users.get(authorization_code.username)

        class OIDCCode(OpenIDCode):
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return False

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return op.key

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": op.key.kid}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                now = int(time.time())
                return {"iss": op.issuer, "iat": now, "exp": now + 300}

            def generate_user_info(self, user: User, scope: str) -> UserInfo:
                claims: dict[str, Any] = {"sub": f"sub-{user.username}"}
                if "profile" in scope.split():
                    claims["preferred_username"] = user.username
                if "email" in scope.split() and user.email:
                    claims.update(email=user.email, email_verified=True)
                if "groups" in scope.split():
                    claims["groups"] = list(user.groups)
                return UserInfo(claims)

        server = AuthorizationServer(app, query_client=op.clients.get, save_token=lambda token, request: None)
        server.register_grant(CodeGrant, [OIDCCode(require_nonce=True), S256Required(required=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return flask.jsonify({
                "issuer": op.issuer, "authorization_endpoint": f"{op.issuer}/authorize",
                "token_endpoint": f"{op.issuer}/token", "jwks_uri": f"{op.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "groups"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            })

        @app.get("/jwks")
        def jwks() -> Any:
            return flask.jsonify(KeySet([op.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            try:
                grant = server.get_consent_grant(end_user=None)
            except OAuth2Error as error:
                if error.redirect_uri:
                    return server.handle_error_response(None, error)
                return flask.jsonify(error=error.error, error_description=error.description), 400
            action = html.escape(flask.request.full_path)
            client = html.escape(grant.client.client_id)
            if flask.request.method == "GET":
                return LOGIN_FORM.format(client=client, error="", action=action)
            if flask.request.form.get("action") == "deny":
                return server.create_authorization_response(grant=grant, grant_user=None)
            user = op.users.get(flask.request.form.get("username", ""))
            if user is None or not secrets.compare_digest(user.password, flask.request.form.get("password", "")):
                error = "<p role=alert>Invalid username or password</p>"
                return LOGIN_FORM.format(client=client, error=error, action=action), 401
            grant.request.user = user
            response = server.create_authorization_response(grant=grant, grant_user=user)
            if op.mischief == "down":  # the user is sent back with a code, and the provider is gone
                op.stop()
            return response

        @app.post("/token")
        def token() -> Any:
            op.token_requests += 1
            response = server.create_token_response()
            if op.mischief in MISCHIEF[:7] and response.status_code == 200:
                body = json.loads(response.get_data())
                body["id_token"] = op.spoil(body["id_token"])
                response.set_data(json.dumps(body))
            return response

        return app

    def spoil(self, token: str) -> str:
        """``token`` changed the way ``mischief`` says."""
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if self.mischief == "tamper":
            claims["preferred_username"] = "admin"
            changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            return f"{header}.{changed}.{signature}"
        if self.mischief == "none":
            unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
            return f"{unsigned}.{payload}."
        if self.mischief == "hs256":
            secret = OctKey.import_key(json.dumps(self.key.as_dict(private=False)).encode())
            return jwt.encode({"alg": "HS256", "kid": self.key.kid}, claims, secret, algorithms=["HS256"])
        changes = {"nonce": {"nonce": "not-the-nonce-we-sent"}, "expired": {"exp": int(time.time()) - 600,
                                                                            "iat": int(time.time()) - 900},
                   "issuer": {"iss": "http://evil.test"}, "audience": {"aud": "another-client"}}
        claims.update(changes[self.mischief or ""])
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    @contextlib.contextmanager
    def running(self) -> Iterator[Provider]:
        self._server = make_server("127.0.0.1", 0, self.app(), threaded=True, request_handler=OneRequestPerConnection)
        self.port = self._server.server_port
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(5)

    def stop(self) -> None:
        """The provider goes down (its port is closed)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
