"""What the web UI asks the policy and the service besides decisions: who holds an action on a
repository, users found by part of their name or e-mail, and who may read the change log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth.manage import Management
from auth.policy import DatabasePolicy, Holders, policy_cache
from auth.rules import AccessRules
from auth.terms import OPERATOR, Caller, Refused
from storage.database import Database

pytestmark = pytest.mark.anyio
ADA, OLGA, OTTO = Caller("ada"), Caller("olga"), Caller("otto")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def manage(tmp_path: Path) -> AsyncIterator[Management]:
    db = Database(f"sqlite:///{tmp_path / 'moorage.db'}")
    manage = Management(db, policy_cache(db))
    manage.cost = 4
    await manage.create_user(OPERATOR, "ada", "ada-pw", admin=True)
    for name, email in (("olga", "Olga@Corp.example"), ("dev", None), ("rita", None), ("otto", "o_100%@x.example"),
                        ("gone", None)):
        await manage.create_user(OPERATOR, name, f"{name}-pw", email)
    await manage.create_team(OPERATOR, "payments-devs", ["dev"])
    await manage.create_namespace(OPERATOR, "payments")
    await manage.set_member(OPERATOR, "payments", "user", "olga", "owner")
    await manage.set_member(OPERATOR, "payments", "team", "payments-devs", "developer")
    await manage.set_member(OPERATOR, "payments", "user", "rita", "reader")
    await manage.set_member(OPERATOR, "payments", "user", "gone", "maintainer")
    await manage.update_user(OPERATOR, "gone", disabled=True)
    await manage.create_namespace(OPERATOR, "payments/secret", public=True)
    yield manage
    await db.close()


async def test_holders_are_the_closest_namespaces_members_whose_role_allows(manage: Management) -> None:
    snapshot = await manage.snapshot()
    assert snapshot.holders("payments/api", "push") == Holders(
        "payments", (("olga", "owner"),), (("payments-devs", "developer"),), False)  # not rita, not disabled gone
    pull = snapshot.holders("payments/api", "pull")
    assert pull.users == (("olga", "owner"), ("rita", "reader")) and not pull.anyone
    assert snapshot.holders("payments/secret/x", "push") == Holders("payments/secret", (), (), False)
    assert snapshot.holders("payments/secret/x", "pull").anyone  # public
    assert snapshot.holders("dev/tool", "push") == Holders("dev", (("dev", "owner"),), (), False)  # personal
    assert snapshot.holders("nobody/x", "push") == Holders(None, (), (), False)  # admins only
    assert snapshot.holders("gone/x", "push") == Holders("gone", (), (), False)  # a disabled user's own


async def test_the_policy_says_when_file_rules_may_decide_first(manage: Management) -> None:
    rules = AccessRules({"rules": [{"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
                                   {"repositories": ["public/*"], "who": ["anonymous"], "actions": ["pull"]}]})
    assert manage.cache is not None
    await manage.cache.refresh()
    policy = DatabasePolicy(rules, manage.cache)
    assert policy.holders("payments/api", "push").rules  # {user}/** matches for the user "payments"
    assert policy.holders("public/base", "push").rules
    public_only = AccessRules({"rules": [{"repositories": ["public/*"], "who": ["anonymous"], "actions": ["pull"]}]})
    assert not DatabasePolicy(public_only, manage.cache).holders("payments/api", "push").rules


async def test_users_are_found_by_part_of_their_name_or_e_mail(manage: Management) -> None:
    async def names(term: str | None, after: str | None = None, limit: int = 100) -> list[str]:
        return [u.name for u in await manage.list_users(ADA, after, limit, term)]

    assert await names(None) == ["ada", "dev", "gone", "olga", "otto", "rita"]
    assert await names("o") == ["gone", "olga", "otto"]
    assert await names("CORP") == ["olga"]  # e-mail, any case
    assert await names("%") == ["otto"] and await names("_1") == ["otto"]  # wildcards are characters
    assert await names("o", after="gone", limit=1) == ["olga"]
    with pytest.raises(Refused):
        await manage.list_users(OLGA, None, 10, "o")


async def test_the_change_log_is_for_admins_and_owners(manage: Management) -> None:
    assert len(await manage.list_changes(ADA, None, 100)) > 10
    assert {c.namespace for c in await manage.list_changes(OLGA, None, 100)} == {
        "payments", "payments/secret", "olga"}  # olga owns her personal namespace too
    assert {c.namespace for c in await manage.list_changes(OTTO, None, 100)} == {"otto"}  # his own only
    with pytest.raises(Refused) as refused:
        await manage.list_changes(Caller("ldap-user"), None, 100)  # owns nothing in the database
    assert refused.value.status == 403
