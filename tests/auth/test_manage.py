"""The management service (auth/manage.py) and the policy it feeds (auth/policy.py), on SQLite; the
races that matter on PostgreSQL too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest

from auth.manage import Management
from auth.policy import DatabasePolicy, PolicySnapshot, policy_cache
from auth.rules import AccessRules
from auth.terms import OPERATOR, Caller, Refused
from registry.maintenance.retention import check_namespace_retention
from storage.database import Database
from storage.database.identity import load_policy

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL, DAVE = Caller("alice"), Caller("bob"), Caller("carol"), Caller("dave")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def make(url: str) -> tuple[Database, Management]:
    db = Database(url)
    manage = Management(db, policy_cache(db), check_retention=check_namespace_retention)
    manage.cost = 4
    return db, manage


@pytest.fixture
async def manage(tmp_path: Path) -> AsyncIterator[Management]:
    db, manage = await make(f"sqlite:///{tmp_path / 'moorage.db'}")
    yield manage
    await db.close()


async def company(manage: Management) -> None:
    """alice admin; bob, carol, dave users; team payments-devs = {bob}; payments owned by carol."""
    await manage.create_user(OPERATOR, "alice", "alice-pw", admin=True)
    for name in ("bob", "carol", "dave"):
        await manage.create_user(ALICE, name, f"{name}-pw")
    await manage.create_team(ALICE, "payments-devs", ["bob"])
    await manage.create_namespace(ALICE, "payments")
    await manage.set_member(ALICE, "payments", "user", "carol", "owner")
    await manage.set_member(CAROL, "payments", "team", "payments-devs", "developer")


async def snapshot(manage: Management) -> PolicySnapshot:
    return await manage.db.read(lambda conn: PolicySnapshot(load_policy(conn)))


async def refused(status: int, code: str, call: object) -> Refused:
    with pytest.raises(Refused) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    return caught.value


async def test_roles_decide_by_the_closest_namespace(manage: Management) -> None:
    await company(manage)
    await manage.create_namespace(CAROL, "payments/secret")  # carol becomes its owner
    await manage.create_user(ALICE, "erin", "erin-pw")
    await manage.set_member(CAROL, "payments/secret", "user", "erin", "reader")
    policy = await snapshot(manage)
    assert policy.actions("bob", "payments/api") == {"pull", "push"}
    assert policy.actions("bob", "payments") == {"pull", "push"}  # the namespace's own path is covered
    assert policy.actions("bob", "payments/secret/keys") == frozenset()  # closest decides: bob is not there
    assert policy.actions("erin", "payments/secret/keys") == {"pull"}
    assert policy.actions("erin", "payments/api") == frozenset()
    assert policy.actions("carol", "payments/secret/keys") == {"pull", "push", "delete", "*"}
    assert policy.actions("dave", "payments/api") == frozenset()
    assert policy.actions(None, "payments/api") == frozenset()
    assert policy.actions("alice", "anything/at/all") >= {"pull", "push", "delete"}  # admin
    assert policy.actions("bob", "paymentsx/api") == frozenset()  # a prefix by components, not characters


async def test_personal_namespaces_and_public_ones(manage: Management) -> None:
    await company(manage)
    policy = await snapshot(manage)
    assert policy.actions("dave", "dave/tool") >= {"pull", "push", "delete"}
    assert policy.actions("bob", "dave/tool") == frozenset()
    assert policy.namespaces["dave"].record.personal == "dave"  # made with the user
    await manage.set_member(DAVE, "dave", "user", "bob", "reader")
    await manage.update_namespace(DAVE, "dave", public=True)
    policy = await snapshot(manage)
    assert policy.namespaces["dave"].record.personal == "dave"
    assert policy.actions("bob", "dave/tool") == {"pull"}
    assert policy.actions(None, "dave/tool") == {"pull"}  # public: anonymous pull
    assert policy.actions("carol", "dave/tool") == {"pull"}


async def test_disabled_users_hold_nothing_and_their_sessions_end(manage: Management) -> None:
    await company(manage)
    before = (await snapshot(manage)).stamp("bob")
    await manage.update_user(ALICE, "bob", disabled=True)
    policy = await snapshot(manage)
    assert policy.actions("bob", "payments/api") == frozenset()
    assert policy.actions("bob", "bob/own") == frozenset()
    assert policy.stamp("bob") is None
    await manage.update_user(ALICE, "bob", disabled=False)
    assert (await snapshot(manage)).stamp("bob") not in (None, before)


async def test_password_change_by_the_user_moves_the_stamp_and_keeps_bcrypt(manage: Management) -> None:
    await company(manage)
    before = (await snapshot(manage)).stamp("bob")
    await manage.update_user(BOB, "bob", password="new-pw")
    policy = await snapshot(manage)
    assert policy.stamp("bob") != before
    assert bcrypt.checkpw(b"new-pw", policy.users["bob"].password.encode())
    await refused(403, "DENIED", manage.update_user(BOB, "bob", admin=True))
    await refused(403, "DENIED", manage.update_user(BOB, "carol", password="x"))


async def test_only_admins_manage_users_and_teams(manage: Management) -> None:
    await company(manage)
    await refused(403, "DENIED", manage.create_user(BOB, "mallory", "pw"))
    await refused(403, "DENIED", manage.remove_user(CAROL, "bob"))
    await refused(403, "DENIED", manage.create_team(CAROL, "mine"))
    await refused(403, "DENIED", manage.add_team_member(BOB, "payments-devs", "dave"))
    await refused(403, "DENIED", manage.list_users(BOB, None, 10))
    await refused(403, "DENIED", manage.get_user(BOB, "carol"))
    assert (await manage.get_user(BOB, "bob"))[1] == ["payments-devs"]
    assert [t.name for t in await manage.list_teams(DAVE, None, 10)] == ["payments-devs"]
    await refused(403, "DENIED", manage.get_team(DAVE, "payments-devs"))
    assert (await manage.get_team(BOB, "payments-devs"))[1] == ["bob"]


async def test_only_owners_manage_their_namespace_and_grant_no_more_than_they_hold(manage: Management) -> None:
    await company(manage)
    await refused(403, "DENIED", manage.set_member(BOB, "payments", "user", "dave", "reader"))  # developer
    await refused(404, "NOT_FOUND", manage.set_member(DAVE, "payments", "user", "dave", "owner"))  # not theirs
    await refused(403, "DENIED", manage.update_namespace(BOB, "payments", public=True))
    await refused(403, "DENIED", manage.update_namespace(BOB, "payments", immutable_tags=["v*"]))
    await refused(403, "DENIED", manage.update_namespace(CAROL, "payments", quota=10))  # quotas: admins
    await refused(403, "DENIED", manage.create_namespace(CAROL, "infra"))  # top level: admins
    await refused(403, "DENIED", manage.remove_namespace(CAROL, "payments"))
    await manage.set_member(CAROL, "payments", "user", "dave", "maintainer")
    await manage.update_namespace(Caller("dave"), "payments", immutable_tags=["v*"])
    await refused(403, "DENIED", manage.set_member(DAVE, "payments", "user", "bob", "reader"))  # maintainer
    view = await manage.get_namespace(CAROL, "payments")
    assert view.role == "owner" and view.record.immutable_tags == ("v*",)
    assert {(m.kind, m.name, m.role) for m in view.members} == {
        ("user", "carol", "owner"), ("user", "dave", "maintainer"), ("team", "payments-devs", "developer")}


async def test_owners_above_manage_below(manage: Management) -> None:
    await company(manage)
    await manage.create_namespace(ALICE, "payments/api")  # created by an admin: no members
    await manage.set_member(CAROL, "payments/api", "user", "dave", "reader")  # carol owns payments above
    await manage.remove_namespace(CAROL, "payments/api")
    await refused(404, "NOT_FOUND", manage.get_namespace(CAROL, "payments/api"))


async def test_the_last_admin_stays(manage: Management) -> None:
    await company(manage)
    for call in (manage.remove_user(ALICE, "alice"), manage.update_user(ALICE, "alice", disabled=True),
                 manage.update_user(ALICE, "alice", admin=False), manage.remove_user(OPERATOR, "alice")):
        error = await refused(409, "CONFLICT", call)
        assert "last admin" in error.message
    await manage.update_user(ALICE, "bob", admin=True)
    await manage.update_user(Caller("bob"), "alice", admin=False)
    assert (await snapshot(manage)).admins == {"bob"}


@pytest.mark.parametrize("call, message", [
    (lambda m: m.create_user(ALICE, "a/b", "pw"), "invalid user name"),
    (lambda m: m.create_user(ALICE, "Alice", "pw"), "invalid user name"),
    (lambda m: m.create_user(ALICE, "anonymous", "pw"), "reserved"),
    (lambda m: m.create_user(ALICE, "x" * 65, "pw"), "at most 64"),
    (lambda m: m.create_user(ALICE, "eve", "p" * 73), "72 bytes"),
    (lambda m: m.create_user(ALICE, "eve", ""), "empty password"),
    (lambda m: m.create_user(ALICE, "eve", "pw", email="not-an-address"), "e-mail"),
    (lambda m: m.set_member(ALICE, "payments", "user", "bob", "superuser"), "unknown role"),
    (lambda m: m.create_namespace(ALICE, "Payments"), "invalid namespace"),
    (lambda m: m.create_namespace(ALICE, "a//b"), "invalid namespace"),
    (lambda m: m.create_team(ALICE, "big", [f"u{i}" for i in range(10_000)]), "at most 5000 members"),
    (lambda m: m.update_namespace(ALICE, "payments", immutable_tags="v*"), "list of tag patterns"),
    (lambda m: m.update_namespace(ALICE, "payments", immutable_tags=["v 1"]), "bad tag pattern"),
    (lambda m: m.update_namespace(ALICE, "payments", retention={"keepnewest": -1}), "retention: keepnewest"),
    (lambda m: m.update_namespace(ALICE, "payments", retention={"forever": True}), "unknown key"),
    (lambda m: m.update_namespace(ALICE, "payments/api", quota=5), "top-level"),
    (lambda m: m.update_namespace(ALICE, "payments", quota=-5), "bytes >= 0"),
])
async def test_bad_input_is_a_clear_400(manage: Management, call, message: str) -> None:  # type: ignore[no-untyped-def]
    await company(manage)
    error = await refused(400, "INVALID_REQUEST", call(manage))
    assert message in error.message


async def test_overlaps_and_duplicates_are_conflicts(manage: Management) -> None:
    await company(manage)
    await refused(409, "CONFLICT", manage.create_namespace(ALICE, "payments"))
    await refused(409, "CONFLICT", manage.create_namespace(ALICE, "payments/"))  # the same namespace
    await refused(409, "CONFLICT", manage.create_user(ALICE, "bob", "pw"))
    await refused(409, "CONFLICT", manage.create_user(ALICE, "payments", "pw"))  # would not own it
    await refused(409, "CONFLICT", manage.create_team(ALICE, "payments-devs"))
    await refused(409, "CONFLICT", manage.create_namespace(ALICE, "bob"))  # bob's own, made with him
    assert (await snapshot(manage)).namespaces["bob"].record.personal == "bob"


async def test_every_change_is_recorded_without_secrets(manage: Management) -> None:
    heard = []
    manage.listeners.append(heard.append)
    await company(manage)
    await manage.update_user(Caller("bob", "10.0.0.7"), "bob", password="secret-new-pw")
    changes = await manage.list_changes(ALICE, None, 100)
    assert [c.action for c in changes][:3] == ["user.update", "namespace.member.set", "namespace.member.set"]
    assert [c.id for c in heard] == sorted(c.id for c in changes)
    update = changes[0]
    assert (update.actor, update.address, update.target) == ("bob", "10.0.0.7", "bob")
    assert update.after["password"] == "changed"
    text = repr(changes)
    assert "secret-new-pw" not in text and "$2b$" not in text
    grant = next(c for c in changes if c.target == "team:payments-devs")
    assert (grant.actor, grant.namespace, grant.after) == ("carol", "payments", {"role": "developer"})
    assert {c.namespace for c in await manage.list_changes(CAROL, None, 100)} == {"payments", "carol"}
    await refused(403, "DENIED", manage.list_changes(BOB, None, 100, namespace="payments"))


async def test_listings_show_what_the_caller_may_see(manage: Management) -> None:
    await company(manage)
    await manage.create_namespace(ALICE, "infra")
    await manage.create_namespace(ALICE, "public-images", public=True)
    seen = {v.record.path: v.role for v in await manage.list_namespaces(BOB, None, 100)}
    assert seen == {"bob": "owner", "payments": "developer", "public-images": None}
    assert {v.record.path for v in await manage.list_namespaces(ALICE, None, 100)} == {
        "alice", "bob", "carol", "dave", "infra", "payments", "public-images"}
    assert [v.record.path for v in await manage.list_namespaces(ALICE, "infra", 1)] == ["payments"]
    await refused(404, "NOT_FOUND", manage.get_namespace(BOB, "infra"))


async def test_import_keeps_bcrypt_hashes(manage: Management) -> None:
    await company(manage)
    entries = {"frank": bcrypt.hashpw(b"frank-pw", bcrypt.gensalt(4)), "bob": bcrypt.hashpw(b"x", bcrypt.gensalt(4)),
               "gina": b"{SHA}not-bcrypt"}
    imported, skipped = await manage.import_users(OPERATOR, entries)
    assert imported == ["frank"]
    assert any(s.startswith("bob: ") and "exists" in s for s in skipped) and any(s.startswith("gina") for s in skipped)
    policy = await snapshot(manage)
    assert bcrypt.checkpw(b"frank-pw", policy.users["frank"].password.encode())


async def test_file_rules_come_first_then_the_database(manage: Management) -> None:
    await company(manage)
    cache = manage.cache
    assert cache is not None
    rules = AccessRules({"admins": ["root"], "rules": [
        {"repositories": ["payments/frozen/**"], "who": ["authenticated"], "actions": ["pull"]},
        {"repositories": ["mirror/**"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
    ]})
    policy = DatabasePolicy(rules, cache, teams=lambda user: frozenset({"payments-devs"}) if user == "ldapuser" else
                            frozenset())
    await policy.refresh()
    assert policy.actions("bob", "repository", "payments/frozen/app") == {"pull"}  # the file decides
    assert policy.actions("bob", "repository", "payments/api") == {"pull", "push"}  # else the database
    assert policy.actions(None, "repository", "mirror/x") == {"pull"}
    assert policy.actions("root", "repository", "payments/api") >= {"push", "delete"}  # file admin
    assert policy.actions("alice", "repository", "payments/frozen/app") >= {"push"}  # database admin
    assert policy.actions("ldapuser", "repository", "payments/api") == {"pull", "push"}  # a directory's team
    assert policy.actions("alice", "registry", "catalog") == {"pull", "push", "delete", "*"}
    assert policy.actions("bob", "repository", "../etc") == frozenset()


async def test_concurrent_removals_never_remove_the_last_admin_postgres(postgres_url: str) -> None:
    db, manage = await make(postgres_url)
    try:
        await manage.create_user(OPERATOR, "alice", "pw", admin=True)
        await manage.create_user(OPERATOR, "bob", "pw", admin=True)
        results = await asyncio.gather(manage.remove_user(OPERATOR, "alice"), manage.remove_user(OPERATOR, "bob"),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "Refused"]
        assert len((await manage.snapshot()).admins) == 1
    finally:
        await db.close()
