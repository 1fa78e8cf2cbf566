"""A throw-away OpenLDAP ``slapd`` (Debian's ``slapd`` package) for the directory tests.

Everything lives in one temporary directory: cn=config (loaded offline with ``slapadd -n0``), an mdb
database, and TLS files from a test CA (trustme). slapd runs in the foreground as a child process on
free loopback ports (ldap:// with StartTLS, and ldaps://); the entries are added online, so the
``memberof`` overlay maintains ``memberOf`` on users. ``stop()`` and ``start()`` again keep the data
(a directory that goes down and comes back).

Directory: ``dc=example,dc=org``; service account ``cn=svc-registry,ou=services,...`` / ``svc-secret``;
users ``alice`` (groups payments-devs, developers), ``bob`` (developers; posixGroup pullers), ``carol``
(no groups); each user's password is ``NAME-secret``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import trustme
from ldap3 import MODIFY_ADD, MODIFY_DELETE, Connection, Server

from tests.loopback import Listening

BASE = "dc=example,dc=org"
ADMIN_DN, ADMIN_PW = f"cn=admin,{BASE}", "admin-secret"
SERVICE_DN, SERVICE_PW = f"cn=svc-registry,ou=services,{BASE}", "svc-secret"
PEOPLE, GROUPS = f"ou=people,{BASE}", f"ou=groups,{BASE}"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"  # /usr/sbin is not on every PATH
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
USERS = {"alice": ["payments-devs", "developers"], "bob": ["developers"], "carol": []}

CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid
olcTLSCACertificateFile: {dir}/ca.pem
olcTLSCertificateFile: {dir}/server.pem
olcTLSCertificateKeyFile: {dir}/server.key

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: {{0}}back_mdb
olcModuleLoad: {{1}}memberof
olcModuleLoad: {{2}}refint

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcAccess: {{0}}to dn.base="" by * read
olcAccess: {{1}}to dn.base="cn=subschema" by * read

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {base}
olcRootDN: {admin}
olcRootPW: {rootpw}
olcDbDirectory: {dir}/db
olcDbMaxSize: 104857600
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,cn eq
olcDbIndex: member,memberUid eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to dn.subtree="{base}" by dn.exact="{service}" read by users read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOfConfig
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={{1}}refint,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcRefintConfig
olcOverlay: {{1}}refint
olcRefintAttribute: member
olcRefintAttribute: memberOf
"""


def ssha(password: str) -> str:
    """A ``{SSHA}`` userPassword, as ``slappasswd`` makes it."""
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


class Slapd(Listening):
    address = "localhost"
    scheme = "ldap"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="moorage-slapd."))
        self.port, self.tls_port = free_port(), free_port()
        self.ca = trustme.CA()
        self.ca.cert_pem.write_to_path(str(self.dir / "ca.pem"))
        leaf = self.ca.issue_cert("localhost", "127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / "server.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / "server.key"))
        (self.dir / "db").mkdir()
        (self.dir / "slapd.d").mkdir()
        config = self.dir / "config.ldif"
        config.write_text(CONFIG.format(dir=self.dir, base=BASE, admin=ADMIN_DN, rootpw=ssha(ADMIN_PW),
                                        service=SERVICE_DN))
        run(SLAPADD, "-n0", "-F", str(self.dir / "slapd.d"), "-l", str(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self.populate()

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    def start(self) -> None:
        ldapi = "ldapi://" + quote(str(self.dir / "ldapi"), safe="")
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/ {ldapi}"
        with open(self.dir / "slapd.log", "ab") as log:
            self.proc = subprocess.Popen([SLAPD, "-d", "0", "-F", str(self.dir / "slapd.d"), "-h", urls],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.dir / 'slapd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self) -> Connection:
        return Connection(Server("127.0.0.1", port=self.port), ADMIN_DN, ADMIN_PW, auto_bind=True)

    def populate(self) -> None:
        with self.admin() as conn:
            conn.add(BASE, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
            for ou in ("people", "groups", "services"):
                conn.add(f"ou={ou},{BASE}", "organizationalUnit", {"ou": ou})
            conn.add(SERVICE_DN, ["applicationProcess", "simpleSecurityObject"],
                     {"cn": "svc-registry", "userPassword": ssha(SERVICE_PW)})
            for name in USERS:
                self.add_user(name, conn)
            groups: dict[str, list[str]] = {}
            for name, member_of in USERS.items():
                for group in member_of:
                    groups.setdefault(group, []).append(user_dn(name))
            for group, members in groups.items():
                conn.add(group_dn(group), "groupOfNames", {"cn": group, "member": members})
            conn.add(group_dn("pullers"), "posixGroup", {"cn": "pullers", "gidNumber": 20001, "memberUid": ["bob"]})

    def add_user(self, name: str, conn: Connection | None = None, password: str | None = None) -> None:
        own = conn is None
        conn = conn or self.admin()
        try:
            ok = conn.add(user_dn(name), "inetOrgPerson", {
                "uid": name, "cn": name.title(), "sn": name.title(), "mail": f"{name}@example.org",
                "userPassword": ssha(password or f"{name}-secret")})
            assert ok, conn.result
        finally:
            if own:
                conn.unbind()

    def set_member(self, group: str, name: str, member: bool) -> None:
        """Add ``name`` to (or remove them from) the groupOfNames ``group``, creating it when needed."""
        with self.admin() as conn:
            if member and not conn.search(group_dn(group), "(objectClass=*)", attributes=["cn"]):
                assert conn.add(group_dn(group), "groupOfNames", {"cn": group, "member": [user_dn(name)]}), conn.result
                return
            if not member:  # groupOfNames needs a member: the service account holds the group's place
                conn.modify(group_dn(group), {"member": [(MODIFY_ADD, [SERVICE_DN])]})
            change = MODIFY_ADD if member else MODIFY_DELETE
            assert conn.modify(group_dn(group), {"member": [(change, [user_dn(name)])]}), conn.result


def run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def require_slapd() -> None:
    """Skip loudly without slapd, or fail in CI (CI=true), which installs it (.ci/setup.d/ldap.sh)."""
    if not Path(SLAPD).exists():
        import pytest

        message = "LDAP TESTS SKIPPED: slapd is not installed (apt-get install slapd ldap-utils)"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(message + " [CI=true: a missing server is a failure]", pytrace=False)
        pytest.skip(message)


def own_slapd() -> Iterator[Slapd]:
    """The body of a fixture that gives a test (or a session) a directory of its own."""
    require_slapd()
    server = Slapd()
    try:
        yield server
    finally:
        server.close()
