"""The ``auth`` config section as typed settings (configkit sections): structure, types, defaults and
unknown keys are checked when the config is read; the files it names are opened by auth.factory."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from configkit import Addr, Bool, ConfigError, Invalid, Section, Str, Text, Texts, choice, duration, integer, required

DEFAULT_TOKEN_PATH = "/auth/token"
TokenDuration = duration(positive=True, days=False)  # Go's units, as the auth keys always took
ANONYMOUS, AUTHENTICATED, GROUP_PREFIX, TEAM_PREFIX = "anonymous", "authenticated", "group:", "team:"
REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})
PATTERN_RE = re.compile(r"(?:[a-z0-9._/*?-]|__|\{user\})+")
TAG_PATTERN_RE = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")  # tag globs: retention's keeptags/protect, immutable tags
TEAM_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # a team's name, as a directory group becomes one


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

    groups: dict[str, Texts | None] = {}  # NAME: [user, ...]; rules name it group:NAME (team:NAME: a team)
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
                if entry.startswith(TEAM_PREFIX) and not TEAM_RE.fullmatch(entry[len(TEAM_PREFIX):]):
                    raise Invalid(f"{entry!r}: not a team name (lowercase letters, digits, . _ -)", key)
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


def check_filter(text: str, key: str) -> None:
    """``text`` parses as an LDAP filter. (ldap3 is imported here: only configs with auth.ldap load it.)"""
    from ldap3.core.exceptions import LDAPException
    from ldap3.operation.search import parse_filter

    try:
        parse_filter(text, None, True, True, None, False)
    except LDAPException as e:
        raise Invalid(f"not a valid LDAP filter {text!r} ({e})", key) from None


class TeamMapping(Section):
    """Groups of an identity provider as teams: ``mapping`` where the names differ, the rest by name."""

    mapping: dict[str, Text] = {}  # group -> team name
    unmapped: choice("name", "ignore") = "name"  # other groups: team of the group's name, or none

    @model_validator(mode="after")
    def _teams(self) -> TeamMapping:
        for group, team in self.mapping.items():
            if not group.strip():
                raise Invalid("an empty group name", "mapping")
            if not TEAM_RE.fullmatch(team):
                raise Invalid(f"{team!r} is not a team name (lowercase letters, digits, . _ -)", f"mapping.{group}")
        return self

    def teams(self, groups: list[tuple[str | None, str | None]]) -> frozenset[str]:
        """Team names of ``(key, name)`` groups: the mapping by either, else the group's own name when it
        is a valid team name (``unmapped: name``). Keys and names compare case-insensitively."""
        mapping = {normal_group(group): team for group, team in self.mapping.items()}
        teams = set()
        for key, name in groups:
            mapped = next((mapping[normal_group(g)] for g in (key, name) if g and normal_group(g) in mapping), None)
            if mapped:
                teams.add(mapped)
            elif name and self.unmapped == "name" and TEAM_RE.fullmatch(name.lower()):
                teams.add(name.lower())
        return frozenset(teams)


def normal_group(group: str) -> str:
    """Case-insensitive, and DNs without the spaces after their commas."""
    return ",".join(part.strip() for part in group.lower().split(","))


class LdapGroupSettings(TeamMapping):
    """``auth.ldap.groups``: which directory groups a user is in, and the teams they become."""

    attribute: Text = "memberOf"  # group DNs on the user's entry (Active Directory, slapo-memberof)
    base: Text | None = None  # set to search for groups below it instead
    filter: Text = "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=posixGroup)(memberUid={user})))"
    nameattribute: Text = "cn"  # the group's name: cn=payments-devs is team payments-devs

    @model_validator(mode="after")
    def _check(self) -> LdapGroupSettings:
        from ldap3.core.exceptions import LDAPInvalidDnError
        from ldap3.utils.dn import parse_dn

        if "{dn}" not in self.filter and "{user}" not in self.filter:
            raise Invalid("must contain {dn} or {user} (the user's DN or name)", "filter")
        check_filter(self.filter.replace("{dn}", "x").replace("{user}", "x"), "filter")
        for group in self.mapping:
            if "=" in group:
                try:
                    parse_dn(normal_group(group))
                except LDAPInvalidDnError as e:
                    raise Invalid(f"not a group name or a valid DN ({e})", f"mapping.{group}") from None
        return self


class LdapSettings(Section):
    """``auth.ldap``: users of an LDAP directory or Active Directory (auth.directory)."""

    KEY = "auth.ldap"

    url: Texts = required()  # ldaps://host:636 or ldap://host:389; several: tried in order
    starttls: Bool = False  # upgrade ldap:// with StartTLS
    cacertificate: Text | None = None  # PEM bundle the server's certificate must chain to (default: system's)
    binddn: Text | None = None  # the service account that searches (none: anonymous search)
    bindpassword: Str = ""
    userbase: Text = required()  # where users are searched (subtree)
    userfilter: Text = "(objectClass=person)"  # AD: (&(objectCategory=person)(objectClass=user))
    usernameattribute: Text = "uid"  # AD: sAMAccountName
    emailattribute: Text = "mail"
    groups: LdapGroupSettings = Field(default_factory=LdapGroupSettings)  # built when read: ldap3 loads lazily
    timeout: TokenDuration = 4.0  # connect and each operation; a login waits at most this long
    cachettl: duration(days=False) = 60.0  # a verified login (and its groups) is trusted this long; 0: never
    poolsize: integer(1, 64) = 4  # directory operations at once (each on its own thread and connection)

    @model_validator(mode="after")
    def _check(self) -> LdapSettings:
        for i, url in enumerate(self.url):
            scheme = url.partition("://")[0].lower()
            if scheme not in ("ldap", "ldaps") or "://" not in url:
                raise Invalid(f"expected ldap://HOST[:PORT] or ldaps://HOST[:PORT], got {url!r}", f"url[{i}]")
            if scheme == "ldaps" and self.starttls:
                raise Invalid("StartTLS is for ldap:// URLs; ldaps:// is TLS already", "starttls")
        check_filter(self.userfilter, "userfilter")
        if self.binddn and not self.bindpassword:
            raise Invalid("required with binddn (or REGISTRY_AUTH_LDAP_BINDPASSWORD)", "bindpassword")
        return self

    @property
    def tls(self) -> bool:
        return self.starttls or all(url.lower().startswith("ldaps://") for url in self.url)


class AccessTokenSettings(Section):
    """``auth.accesstokens``: the policy for personal access tokens and robot tokens (auth.tokens)."""

    KEY = "auth.accesstokens"

    requireexpiry: Bool = False  # every token must have an expiry
    maxlifetime: duration() = 0.0  # the latest expiry allowed, from creation (0: no limit)
    unusedexpiry: duration() = 0.0  # tokens unused this long stop working (0: never)
    peruser: integer(1, 100_000) = 100  # tokens one user (or one robot) may hold


OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcGroupSettings(TeamMapping):
    """``auth.oidc.groups``: the ID token's groups claim as teams."""

    claim: Text = "groups"  # Keycloak, Dex, Okta; Entra ID sends group object IDs: map them


class OidcSettings(Section):
    """``auth.oidc``: web UI login through an OpenID Connect provider (auth.oidc)."""

    KEY = "auth.oidc"

    issuer: Text = required()  # exactly as the provider writes it in its tokens (discovery below it)
    clientid: Text = required()
    clientsecret: Str = ""  # the client's secret (client_secret_basic)
    scopes: Texts = ["openid", "profile", "email", "groups"]
    redirecturl: Text | None = None  # default: the registry's origin + /ui/oidc/callback
    usernameclaim: Text = "preferred_username"
    groups: OidcGroupSettings = OidcGroupSettings()
    algorithms: Texts = list(OIDC_ALGORITHMS)  # ID token signatures accepted (never none or HMAC)
    label: Text = "single sign-on"  # the login page's button: "Log in with ..."
    cacertificate: Text | None = None  # PEM bundle for the provider's HTTPS (default: the system's)
    timeout: TokenDuration = 5.0  # each request to the provider

    @model_validator(mode="after")
    def _check(self) -> OidcSettings:
        if not self.issuer.startswith(("https://", "http://")):
            raise Invalid(f"expected an https:// URL, got {self.issuer!r}", "issuer")
        if "openid" not in self.scopes:
            raise Invalid("must include openid", "scopes")
        for alg in self.algorithms:
            if alg not in OIDC_ALGORITHMS:
                raise Invalid(f"{alg!r} not allowed (one of {', '.join(OIDC_ALGORITHMS)})", "algorithms")
        if self.redirecturl is not None and not self.redirecturl.startswith(("https://", "http://")):
            raise Invalid(f"expected an absolute URL, got {self.redirecturl!r}", "redirecturl")
        if not self.clientsecret:
            raise Invalid("required (the registry is a confidential client; REGISTRY_AUTH_OIDC_CLIENTSECRET)",
                          "clientsecret")
        return self


class DatabaseAuthSettings(Section):
    """``auth.database``: users, teams, namespaces and roles from the database (``database``), beside or
    instead of an htpasswd file, under the token server or Basic (docs/access.md)."""


class AuthSettings(Section):
    """Distribution's ``htpasswd`` and ``token``, Moorage's ``tokenserver`` and ``access``; none: no auth."""

    KEY = "auth"
    UNKNOWN = "not supported"

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    tokenserver: TokenServerSettings | None = None
    access: AccessSettings | None = None
    brake: BrakeSettings | None = None
    ldap: LdapSettings | None = None
    oidc: OidcSettings | None = None
    accesstokens: AccessTokenSettings | None = None
    database: DatabaseAuthSettings | None = None

    def check_complete(self) -> None:
        """The sections fit together. Checked when auth is set up, not when the config is read:
        ``moorage user add --config`` works with a config whose auth is still being written."""
        if self.htpasswd and self.token:
            raise ConfigError("auth: configure either htpasswd or token, not both")
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if given and not (self.htpasswd or self.token or self.ldap or self.database):
            raise ConfigError(f"auth: {', '.join(given)} needs auth.htpasswd, auth.ldap or auth.token "
                              "(or auth.database)")
        if self.tokenserver and not self.token:
            raise ConfigError("auth.tokenserver: needs auth.token (service and issuer of the tokens)")

    @property
    def mode(self) -> str:
        """``htpasswd``, ``database`` or ``ldap`` (Basic against the database's users or the directory,
        without a file), ``token`` or ``none``."""
        if self.htpasswd or self.token:
            return "htpasswd" if self.htpasswd else "token"
        return "database" if self.database else "ldap" if self.ldap else "none"
