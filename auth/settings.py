"""The ``auth`` config section as typed settings (configkit sections): structure, types, defaults and
unknown keys are checked when the config is read; the files it names are opened by auth.factory."""

from __future__ import annotations

import re

from pydantic import model_validator

from configkit import Addr, Bool, ConfigError, Invalid, Section, Text, Texts, duration, integer, required

DEFAULT_TOKEN_PATH = "/auth/token"
TokenDuration = duration(positive=True, days=False)  # Go's units, as the auth keys always took
ANONYMOUS, AUTHENTICATED, GROUP_PREFIX = "anonymous", "authenticated", "group:"
REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})
PATTERN_RE = re.compile(r"(?:[a-z0-9._/*?-]|__|\{user\})+")
TAG_PATTERN_RE = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")  # tag globs: retention's keeptags/protect, immutable tags


class HtpasswdSettings(Section):
    realm: Text = "moorage"  # realm of the Basic challenge
    path: Text | None = None  # required: checked with the file (auth.factory)


class TokenSettings(Section):
    realm: Text | None = None  # where clients get tokens; with autoredirect the request's origin + path
    service: Text = required()  # the tokens' audience
    issuer: Text = required()
    rootcertbundle: Text | None = None
    jwks: Text | None = None
    signingalgorithms: Texts | None = None  # default: every asymmetric algorithm
    autoredirect: Bool = False
    autoredirectpath: Text = DEFAULT_TOKEN_PATH

    @model_validator(mode="after")
    def _complete(self) -> TokenSettings:
        if self.realm is None and not self.autoredirect:
            raise Invalid("expected a non-empty string (the token server's URL), or set autoredirect: true",
                          "realm")
        if not self.rootcertbundle and not self.jwks:
            raise Invalid("required (or auth.token.jwks)", "rootcertbundle")
        return self


class TLSFiles(Section):
    certificate: Text | None = None
    key: Text | None = None


class TokenServerSettings(Section):
    path: Text = DEFAULT_TOKEN_PATH  # where the registry serves it
    htpasswd: Text | None = None  # required: checked with the file
    key: Text | None = None  # required: checked with the file
    certificate: Text | None = None
    expiration: TokenDuration = 300.0
    refreshexpiration: TokenDuration = 90 * 24 * 3600.0
    addr: Addr = "127.0.0.1:5001"  # of `moorage token-server`
    tls: TLSFiles | None = None

    @model_validator(mode="after")
    def _path(self) -> TokenServerSettings:
        if not self.path.startswith("/") or self.path.startswith("/v2"):
            raise Invalid(f"must start with / and not with /v2, got {self.path!r}", "path")
        return self


class RuleSettings(Section):
    repositories: Texts
    who: Texts
    actions: Texts | None  # [] or null denies

    @model_validator(mode="after")
    def _grammar(self) -> RuleSettings:
        for pattern in self.repositories:
            if not PATTERN_RE.fullmatch(pattern):
                raise Invalid(f"bad pattern {pattern!r} (lowercase names, / * ** ? and {{user}} only)",
                              "repositories")
        unknown = set(self.actions or ()) - REPOSITORY_ACTIONS - {"*"}
        if unknown:
            raise Invalid(f"unknown action {sorted(unknown)[0]!r} (pull, push, delete, *)", "actions")
        return self


class AccessSettings(Section):
    KEY = "auth.access"

    groups: dict[str, Texts | None] = {}  # NAME: [user, ...]; rules name it group:NAME
    admins: Texts = []
    catalog: Texts = [AUTHENTICATED]
    metrics: Texts = []  # who besides the admins may read http.metrics
    rules: list[RuleSettings] = []

    @model_validator(mode="after")
    def _who(self) -> AccessSettings:
        lists = [("admins", self.admins), ("catalog", self.catalog), ("metrics", self.metrics)]
        lists += [(f"rules[{i}].who", rule.who) for i, rule in enumerate(self.rules)]
        for key, who in lists:
            for entry in who:
                if entry.startswith(GROUP_PREFIX) and entry[len(GROUP_PREFIX):] not in self.groups:
                    raise Invalid(f"unknown group {entry[len(GROUP_PREFIX):]!r}", key)
                if key == "admins" and entry in (ANONYMOUS, AUTHENTICATED):
                    raise Invalid(f"{entry!r} is not allowed here", key)
        return self


DEFAULT_ACCESS = AccessSettings(rules=[RuleSettings(repositories=["**"], who=[AUTHENTICATED], actions=["*"])])


class BrakeSettings(Section):
    """``auth.brake``: the brute-force brake on wrong passwords (auth.brake), on by default."""

    enabled: Bool = True
    attempts: integer(1) = 5  # failures in a row before each try must wait
    delay: TokenDuration = 1.0  # the first wait, doubling with every further failure
    maxdelay: TokenDuration = 300.0
    window: TokenDuration = 900.0  # failures this old are forgotten
    entries: integer(1) = 100_000  # (user, address) pairs remembered at most


class AuthSettings(Section):
    """Distribution's ``htpasswd`` and ``token``, Moorage's ``tokenserver`` and ``access``; none: no auth."""

    KEY = "auth"
    UNKNOWN = "not supported"

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    tokenserver: TokenServerSettings | None = None
    access: AccessSettings | None = None
    brake: BrakeSettings | None = None

    def check_complete(self) -> None:
        """The sections fit together. Checked when auth is set up, not when the config is read:
        ``moorage user add --config`` works with a config whose auth is still being written."""
        if self.htpasswd and self.token:
            raise ConfigError("auth: configure either htpasswd or token, not both")
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if given and not (self.htpasswd or self.token):
            raise ConfigError(f"auth: {', '.join(given)} needs auth.htpasswd or auth.token")
        if self.tokenserver and not self.token:
            raise ConfigError("auth.tokenserver: needs auth.token (service and issuer of the tokens)")

    @property
    def mode(self) -> str:
        """``htpasswd``, ``token`` or ``none``."""
        return "htpasswd" if self.htpasswd else "token" if self.token else "none"
