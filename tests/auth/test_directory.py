"""The LDAP source (auth.directory) and the credential chain, against a real OpenLDAP slapd."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.credentials import Credentials, HtpasswdSource, Identity, SourceUnavailable, Verdict
from auth.directory import Directory
from auth.htpasswd import Htpasswd
from auth.settings import AuthSettings, LdapSettings
from configkit import ConfigError
from tests.auth.conftest import bcrypt_line
from tests.ldapserver import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PW, Slapd, own_slapd


def settings(slapd: Slapd, **overrides: Any) -> LdapSettings:
    raw: dict[str, Any] = {"url": slapd.url, "starttls": True, "cacertificate": slapd.ca_file,
                           "binddn": SERVICE_DN, "bindpassword": SERVICE_PW, "userbase": PEOPLE}
    raw.update(overrides)
    return LdapSettings.parse({k: v for k, v in raw.items() if v is not None})


def verify(directory: Directory | Credentials, user: str, password: str) -> Any:
    return asyncio.run(directory.verify(user, password))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def directory(slapd: Slapd) -> Iterator[Directory]:
    source = Directory(settings(slapd))
    yield source
    source.close()


def test_login_finds_the_user_binds_and_maps_groups_to_teams(directory: Directory) -> None:
    alice = verify(directory, "alice", "alice-secret")
    assert alice == Identity("alice", "ldap", frozenset({"payments-devs", "developers"}), "alice@example.org")
    assert verify(directory, "ALICE", "alice-secret").name == "alice"  # the directory's spelling, lower-cased
    assert verify(directory, "carol", "carol-secret").teams == frozenset()


@pytest.mark.parametrize("user", ["nobody", "*", "alice)(uid=*", "al*", "alice\\", "(uid=alice)"])
def test_unknown_users_and_filter_metacharacters_find_nobody(directory: Directory, user: str) -> None:
    assert verify(directory, user, "alice-secret") is Verdict.UNKNOWN


def test_wrong_or_empty_password_is_refused_without_an_unauthenticated_bind(directory: Directory) -> None:
    assert verify(directory, "alice", "wrong") is Verdict.REFUSED
    assert verify(directory, "alice", "") is Verdict.UNKNOWN


def test_ldaps_and_starttls_check_the_certificate(slapd: Slapd) -> None:
    for overrides in ({"url": slapd.ldaps_url, "starttls": False}, {}):
        trusting = Directory(settings(slapd, **overrides))
        assert verify(trusting, "bob", "bob-secret").name == "bob"
        untrusting = Directory(settings(slapd, **overrides, cacertificate=None))  # the system's CAs only
        with pytest.raises(SourceUnavailable):
            verify(untrusting, "bob", "bob-secret")


def test_a_name_the_certificate_does_not_cover_is_refused(slapd: Slapd) -> None:
    other = Directory(settings(slapd, url=f"ldaps://127.0.0.2:{slapd.tls_port}", starttls=False))
    with pytest.raises(SourceUnavailable):
        verify(other, "bob", "bob-secret")


def test_group_search_finds_groupofnames_and_posixgroup(slapd: Slapd) -> None:
    directory = Directory(settings(slapd, groups={"base": GROUPS}))
    assert verify(directory, "bob", "bob-secret").teams == frozenset({"developers", "pullers"})


def test_explicit_mapping_by_dn_or_name_and_ignoring_the_rest(slapd: Slapd) -> None:
    mapping = {f"cn=payments-devs, {GROUPS}": "payments", "Developers": "devs"}
    mapped = Directory(settings(slapd, groups={"mapping": mapping}))
    assert verify(mapped, "alice", "alice-secret").teams == frozenset({"payments", "devs"})
    only = Directory(settings(slapd, groups={"mapping": {"payments-devs": "payments"}, "unmapped": "ignore"}))
    assert verify(only, "alice", "alice-secret").teams == frozenset({"payments"})


def test_successes_are_cached_for_the_ttl_and_failures_never(slapd: Slapd) -> None:
    clock = Clock()
    directory = Directory(settings(slapd, cachettl="30s"), clock=clock)
    assert verify(directory, "dave", "dave-secret") is Verdict.UNKNOWN
    slapd.add_user("dave")
    assert verify(directory, "dave", "dave-secret").teams == frozenset()  # the miss was not remembered
    slapd.set_member("payments-devs", "dave", True)
    assert verify(directory, "dave", "dave-secret").teams == frozenset()  # cached
    assert verify(directory, "dave", "wrong") is Verdict.REFUSED  # another password is not the cached one
    clock.now += 31
    assert verify(directory, "dave", "dave-secret").teams == frozenset({"payments-devs"})
    assert asyncio.run(directory.current("dave")).teams == frozenset({"payments-devs"})
    slapd.set_member("payments-devs", "dave", False)
    clock.now += 31
    assert asyncio.run(directory.current("dave")).teams == frozenset()
    assert asyncio.run(directory.current("nobody")) is None


def test_service_account_refused_is_unavailable_not_a_wrong_password(slapd: Slapd) -> None:
    directory = Directory(settings(slapd, bindpassword="wrong"))
    with pytest.raises(SourceUnavailable, match="binddn"):
        verify(directory, "alice", "alice-secret")


@pytest.fixture
def stoppable() -> Iterator[Slapd]:
    """A directory this test may stop."""
    yield from own_slapd()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a directory that hangs)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def chain(tmp_path: Path, directory: Directory) -> Credentials:
    path = tmp_path / "htpasswd"
    path.write_text(bcrypt_line("local", "local-pw") + "\n" + bcrypt_line("alice", "local-alice-pw") + "\n")
    return Credentials([HtpasswdSource(Htpasswd(path)), directory])


def test_chain_local_users_first_and_a_local_refusal_is_final(tmp_path: Path, slapd: Slapd) -> None:
    credentials = chain(tmp_path, Directory(settings(slapd)))
    assert verify(credentials, "local", "local-pw") == Identity("local", "htpasswd")
    assert verify(credentials, "alice", "local-alice-pw").source == "htpasswd"
    assert verify(credentials, "alice", "alice-secret") is None  # the directory does not shadow a local user
    assert verify(credentials, "bob", "bob-secret").source == "ldap"
    assert verify(credentials, "bob", "wrong") is None


def test_directory_down_local_users_work_directory_users_unavailable(tmp_path: Path, stoppable: Slapd) -> None:
    credentials = chain(tmp_path, Directory(settings(stoppable, cachettl=0)))
    assert verify(credentials, "bob", "bob-secret").name == "bob"
    stoppable.stop()
    assert verify(credentials, "local", "local-pw").name == "local"
    started = time.monotonic()
    with pytest.raises(SourceUnavailable):
        verify(credentials, "bob", "bob-secret")
    assert time.monotonic() - started < 5
    stoppable.start()
    assert verify(credentials, "bob", "bob-secret").name == "bob"


def test_a_hanging_directory_is_given_up_after_the_timeout(tmp_path: Path, hanging_port: int) -> None:
    hanging = LdapSettings.parse({"url": f"ldap://127.0.0.1:{hanging_port}", "userbase": PEOPLE, "timeout": "1s",
                                  "poolsize": 2})
    credentials = chain(tmp_path, Directory(hanging))
    for _ in range(3):  # more logins than the pool has threads: each still gives up in time
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="did not answer"):
            verify(credentials, "bob", "bob-secret")
        assert time.monotonic() - started < 5
    assert verify(credentials, "local", "local-pw").name == "local"


def test_unavailable_directory_does_not_count_as_a_failed_login(tmp_path: Path) -> None:
    from auth.brake import LoginBrake

    down = LdapSettings.parse({"url": "ldap://127.0.0.1:9", "userbase": PEOPLE})
    brake = LoginBrake(attempts=1)
    credentials = Credentials(chain(tmp_path, Directory(down)).sources, brake)
    for _ in range(3):
        with pytest.raises(SourceUnavailable):
            verify(credentials, "bob", "bob-secret")
    assert brake.wait("bob", "") == 0


@pytest.mark.parametrize(("section", "key"), [
    ({"url": "ldap://x", "userbase": "dc=x", "usernameatribute": "uid"}, "auth.ldap.usernameatribute"),
    ({"url": "http://x", "userbase": "dc=x"}, "auth.ldap.url[0]"),
    ({"url": "ldaps://x", "userbase": "dc=x", "starttls": True}, "auth.ldap.starttls"),
    ({"url": "ldap://x", "userbase": "dc=x", "userfilter": "(uid=x"}, "auth.ldap.userfilter"),
    ({"url": "ldap://x", "userbase": "dc=x", "binddn": "cn=svc"}, "auth.ldap.bindpassword"),
    ({"url": "ldap://x", "userbase": "dc=x", "groups": {"mapping": {"cn=a,,dc=x": "a"}}},
     "auth.ldap.groups.mapping.cn=a,,dc=x"),
    ({"url": "ldap://x", "userbase": "dc=x", "groups": {"mapping": {"admins": "Bad Team"}}},
     "auth.ldap.groups.mapping.admins"),
    ({"url": "ldap://x", "userbase": "dc=x", "groups": {"maping": {}}}, "auth.ldap.groups.maping"),
    ({"url": "ldap://x", "userbase": "dc=x", "groups": {"filter": "(member=x)"}}, "auth.ldap.groups.filter"),
    ({"url": "ldap://x"}, "auth.ldap.userbase"),
])
def test_config_errors_name_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuthSettings.parse({"ldap": section})
    assert str(info.value).startswith(f"{key}: "), str(info.value)
