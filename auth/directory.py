"""Users of an LDAP directory or Active Directory (``auth.ldap``), as a source of the credential chain.

A login searches the user with the service account (the filter built with escaping, so a name such as
``*`` matches nobody but itself), then binds as the user's DN with the password, and reads the user's
groups (``memberOf`` on the entry, or a group search), mapped to team names. Every call opens its own
connection on a bounded thread pool (``poolsize``), never on the event loop, and is abandoned after
``timeout``: a directory that is down or hangs makes its users' logins fail promptly with
SourceUnavailable (503), while local users never reach it.

TLS (``ldaps://`` or ``starttls``) always checks the server's certificate against ``cacertificate`` or
the system's trust store, and its host name. Verified logins are remembered for ``cachettl`` under a
keyed digest (clients send Basic on every request, and a directory round trip is two connections);
failures are never remembered, so a user who fixes a typo or is added to the directory gets in at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ldap3 import AUTO_BIND_NONE, FIRST, NONE, SUBTREE, Connection, Server, ServerPool, Tls
from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from auth.credentials import Identity, SourceUnavailable, Verdict
from auth.settings import LdapSettings

log = logging.getLogger("moorage.auth.ldap")

CACHE_ENTRIES = 4096
STAMP = "ldap"  # a directory user's password is the directory's: sessions and refresh tokens re-check them
T = TypeVar("T")


class TTLCache:
    """Positive answers for ``ttl`` seconds, at most ``entries`` of them (the oldest go first)."""

    def __init__(self, ttl: float, entries: int = CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.entries, self.clock = ttl, entries, clock
        self._items: OrderedDict[Any, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Identity | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self.clock():
                del self._items[key]
                return None
            return item[1]

    def put(self, key: Any, identity: Identity) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self.clock() + self.ttl, identity)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


class Directory:
    kind = "ldap"

    def __init__(self, settings: LdapSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.cacertificate) if settings.tls else None
        self.verified = TTLCache(settings.cachettl, clock=clock)  # HMAC(user, password) -> identity
        self.known = TTLCache(settings.cachettl, clock=clock)  # user -> identity (without a password)
        self._key = secrets.token_bytes(32)
        self._pool = ThreadPoolExecutor(settings.poolsize, thread_name_prefix="moorage-ldap")
        self._seconds = max(1, math.ceil(settings.timeout))  # ldap3's socket and search limits: whole seconds

    # --- the credential source ------------------------------------------------------------------------

    async def verify(self, user: str, password: str, address: str = "") -> Identity | Verdict:
        if not password:  # an empty password would be an "unauthenticated bind", never a login
            return Verdict.UNKNOWN
        digest = hmac.new(self._key, f"{user.lower()}\0{password}".encode(), hashlib.sha256).digest()
        cached = self.verified.get(digest)
        if cached is not None:
            return cached
        verdict = await self._run(self._verify, user, password)
        if isinstance(verdict, Identity):
            self.verified.put(digest, verdict)
            self.known.put(user.lower(), verdict)
        return verdict

    async def current(self, user: str) -> Identity | None:
        cached = self.known.get(user.lower())
        if cached is not None:
            return cached
        identity = await self._run(self._lookup, user)
        if identity is not None:
            self.known.put(user.lower(), identity)
        return identity

    def stamp(self, user: str) -> str | None:
        return STAMP

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- off the event loop -----------------------------------------------------------------------------

    async def _run(self, call: Callable[[str], T], *args: str) -> T:
        """``call`` on the pool, given up after ``timeout`` (the thread ends on its sockets' timeouts)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, call, *args)
        try:
            return await asyncio.wait_for(future, self.settings.timeout)
        except TimeoutError:
            log.warning("LDAP directory did not answer within %gs", self.settings.timeout)
            raise SourceUnavailable(f"the LDAP directory did not answer within {self.settings.timeout:g}s") from None
        except LDAPException as e:
            log.warning("LDAP directory unavailable: %s", e)
            raise SourceUnavailable(f"the LDAP directory is unavailable ({type(e).__name__})") from None

    def _verify(self, user: str, password: str) -> Identity | Verdict:
        with self._service() as conn:
            entry = self._find(conn, user)
            if entry is None:
                return Verdict.UNKNOWN
            dn, attributes = entry
            if not self._bind_as(dn, password):
                return Verdict.REFUSED
            return self._identity(conn, user, dn, attributes)

    def _lookup(self, user: str) -> Identity | None:
        with self._service() as conn:
            entry = self._find(conn, user)
            return None if entry is None else self._identity(conn, user, *entry)

    def _server(self) -> Server | ServerPool:
        """New each time: ldap3 remembers a failed address for 5 s, which would outlast an outage."""
        s = self.settings
        servers = [Server(url, tls=self.tls, connect_timeout=s.timeout, get_info=NONE) for url in s.url]
        return servers[0] if len(servers) == 1 else ServerPool(servers, FIRST, active=1, exhaust=False)

    def _connection(self, dn: str | None, password: str | None) -> Connection:
        """An open, TLS-protected (when configured) connection, not yet bound."""
        conn = Connection(self._server(), user=dn, password=password, auto_bind=AUTO_BIND_NONE, read_only=True,
                          auto_referrals=False, receive_timeout=self._seconds, raise_exceptions=False)
        conn.open()
        if self.settings.starttls and not conn.start_tls():
            conn.unbind()
            raise SourceUnavailable(f"the LDAP directory refused StartTLS: {conn.result}")
        return conn

    @contextlib.contextmanager
    def _service(self) -> Iterator[Connection]:
        """A connection bound as the service account, closed afterwards."""
        settings = self.settings
        conn = self._connection(settings.binddn, settings.bindpassword or None)
        try:
            if not conn.bind():
                description = (conn.result or {}).get("description", "refused")
                log.error("LDAP service account %r cannot bind: %s", settings.binddn or "(anonymous)", description)
                raise SourceUnavailable("the registry cannot log in to the LDAP directory (auth.ldap.binddn)")
            yield conn
        finally:
            conn.unbind()

    def _bind_as(self, dn: str, password: str) -> bool:
        conn = self._connection(dn, password)
        try:
            if conn.bind():
                return True
            if (conn.result or {}).get("result") != 49:  # anything but invalidCredentials: not the user's fault
                raise SourceUnavailable(f"the LDAP directory refused the bind: {conn.result.get('description')}")
            return False
        finally:
            conn.unbind()

    def _find(self, conn: Connection, user: str) -> tuple[str, dict[str, list[Any]]] | None:
        """The DN and attributes of the one entry named ``user``; None when there is none or several."""
        s = self.settings
        wanted = [s.usernameattribute, s.emailattribute]
        if s.groups.base is None:
            wanted.append(s.groups.attribute)
        search = f"(&{s.userfilter}({s.usernameattribute}={escape_filter_chars(user)}))"
        if not conn.search(s.userbase, search, SUBTREE, attributes=wanted, size_limit=2,
                           time_limit=self._seconds):
            code = (conn.result or {}).get("result", 0)
            if code not in (0, 4, 32):  # success (no entries), sizeLimitExceeded, noSuchObject
                raise SourceUnavailable(f"the LDAP search failed: {conn.result.get('description')}")
        entries = [e for e in conn.response or () if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if entries:
                log.warning("LDAP: %d entries match user %r below %s: refused", len(entries), user, s.userbase)
            return None
        return entries[0]["dn"], entries[0].get("attributes", {})

    def _identity(self, conn: Connection, user: str, dn: str, attributes: dict[str, list[Any]]) -> Identity:
        s = self.settings
        name = first(attributes.get(s.usernameattribute)) or user
        email = first(attributes.get(s.emailattribute))
        if s.groups.base is None:
            groups = [(d, rdn_value(d, s.groups.nameattribute)) for d in values(attributes.get(s.groups.attribute))]
        else:
            groups = self._group_search(conn, dn, name)
        return Identity(str(name).lower(), self.kind, s.groups.teams(groups), str(email) if email else None)

    def _group_search(self, conn: Connection, dn: str, name: str) -> list[tuple[str, str | None]]:
        s = self.settings.groups
        search = s.filter.replace("{dn}", escape_filter_chars(dn)).replace("{user}", escape_filter_chars(name))
        conn.search(s.base, search, SUBTREE, attributes=[s.nameattribute],
                    time_limit=self._seconds)
        found = []
        for entry in conn.response or ():
            if entry.get("type") == "searchResEntry":
                found.append((entry["dn"], first(entry.get("attributes", {}).get(s.nameattribute))))
        return found


def first(value: Any) -> Any:
    """An attribute's first value (ldap3 gives lists for multi-valued attributes, scalars otherwise)."""
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value or None


def values(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def rdn_value(dn: str, attribute: str) -> str | None:
    """``payments-devs`` of ``cn=payments-devs,ou=groups,...`` when the first RDN is ``attribute``."""
    try:
        parts = parse_dn(dn)
    except LDAPInvalidDnError:
        return None
    if parts and parts[0][0].lower() == attribute.lower():
        return parts[0][1]
    return None
