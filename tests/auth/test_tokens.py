"""Personal access tokens and robot accounts (auth/tokens.py) on SQLite: creation checks, verification,
scope at use, expiry, revocation, limits, last use and the change log."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth.credentials import CredentialRefused, Identity, Verdict
from auth.manage import Management
from auth.policy import DatabasePolicy, policy_cache
from auth.rules import AccessRules
from auth.settings import AccessTokenSettings
from auth.terms import OPERATOR, Caller, Refused
from auth.tokens import PAT_PREFIX, ROBOT_PREFIX, AccessTokens, digest, secret_id
from storage.database import Database
from storage.database import identity as store

pytestmark = pytest.mark.anyio
ALICE, BOB, CAROL = Caller("alice"), Caller("bob"), Caller("carol")
LATER = "2099-01-01T00:00:00Z"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Management, AccessTokens, Clock, DatabasePolicy]]:
    """alice admin; bob developer on payments (via team payments-devs); carol owns payments."""
    db = Database(f"sqlite:///{tmp_path / 'moorage.db'}")
    cache = policy_cache(db)
    manage = Management(db, cache)
    manage.cost = 4
    await manage.create_user(OPERATOR, "alice", "alice-pw", admin=True)
    for name in ("bob", "carol"):
        await manage.create_user(ALICE, name, f"{name}-pw")
    await manage.create_team(ALICE, "payments-devs", ["bob"])
    await manage.create_namespace(ALICE, "payments")
    await manage.set_member(ALICE, "payments", "user", "carol", "owner")
    await manage.set_member(CAROL, "payments", "team", "payments-devs", "developer")
    policy = DatabasePolicy(AccessRules({"rules": []}), cache)
    await policy.refresh()
    clock = Clock()

    def actions(user: str, repository: str) -> frozenset[str]:
        return policy.actions(user, "repository", repository)

    tokens = AccessTokens(db, AccessTokenSettings(peruser=5), actions, clock=clock)
    yield manage, tokens, clock, policy
    await tokens.close()
    await db.close()


async def test_create_verify_and_the_secret_is_stored_only_as_a_hash(setup) -> None:
    manage, tokens, clock, _ = setup
    made = await tokens.create(BOB, "ci", ["pull"], ["payments/**"], LATER)
    assert made.secret.startswith(PAT_PREFIX) and secret_id(made.secret) == made.record.id
    row = await manage.db.read(lambda conn: conn.exec_driver_sql("SELECT * FROM tokens").mappings().all())
    assert len(row) == 1 and made.secret not in str(dict(row[0]))
    assert row[0]["digest"] == digest(made.record.id, made.secret)
    identity = await tokens.verify("bob", made.secret, "10.0.0.1")
    assert isinstance(identity, Identity) and identity.name == "bob" and identity.source == "token"
    assert identity.scope.narrow(frozenset({"pull", "push"}), "payments/api") == {"pull"}
    assert identity.scope.narrow(frozenset({"pull", "push"}), "other/api") == frozenset()
    assert await tokens.verify("carol", made.secret) is Verdict.REFUSED  # another user's name
    altered = made.secret[:-1] + ("A" if made.secret[-1] != "A" else "B")
    assert await tokens.verify("bob", altered) is Verdict.REFUSED
    assert await tokens.verify("bob", "bob-pw") is Verdict.UNKNOWN  # not a token: the next source decides


async def test_scope_never_wider_than_the_creator(setup) -> None:
    _, tokens, _, _ = setup
    with pytest.raises(Refused, match="may not delete on payments/") as caught:
        await tokens.create(BOB, "wide", ["pull", "push", "delete"], ["payments/**"])
    assert caught.value.status == 403
    await tokens.create(BOB, "ok", ["pull", "push"], ["payments/api"])
    with pytest.raises(Refused, match="may not pull on secret/"):
        await tokens.create(BOB, "other", ["pull"], ["secret/**"])


async def test_the_creator_losing_rights_shrinks_the_token(setup) -> None:
    manage, tokens, _, policy = setup
    made = await tokens.create(BOB, "ci", ["pull", "push"], ["payments/**"])
    identity = await tokens.verify("bob", made.secret)
    assert identity.scope.narrow(policy.actions("bob", "repository", "payments/api"), "payments/api") == {
        "pull", "push"}
    await manage.remove_team_member(ALICE, "payments-devs", "bob")
    await policy.cache.refresh()
    assert identity.scope.narrow(policy.actions("bob", "repository", "payments/api"), "payments/api") == frozenset()


@pytest.mark.parametrize(("fields", "message"), [
    ({"scopes": ["push"]}, "scopes must be one of"),
    ({"scopes": ["pull", "delete"]}, "scopes must be one of"),
    ({"expires": "2020-01-01T00:00:00Z"}, "is in the past"),
    ({"expires": "tomorrow"}, "not an RFC 3339 time"),
    ({"repositories": []}, "non-empty list"),
    ({"repositories": ["Payments/**"]}, "bad repository glob"),
    ({"repositories": ["{user}/**"]}, "bad repository glob"),
    ({"name": "Bad Name"}, "invalid token name"),
])
async def test_bad_input_is_a_clear_400(setup, fields: dict, message: str) -> None:
    _, tokens, _, _ = setup
    args = {"name": "t", "scopes": ["pull"], "repositories": None, "expires": None, **fields}
    with pytest.raises(Refused, match=message) as caught:
        await tokens.create(BOB, args["name"], args["scopes"], args["repositories"], args["expires"])
    assert caught.value.status == 400


async def test_per_user_limit_and_unique_names(setup) -> None:
    _, tokens, _, _ = setup
    for i in range(5):
        await tokens.create(CAROL, f"t{i}", ["pull"])
    with pytest.raises(Refused, match="the most allowed") as caught:
        await tokens.create(CAROL, "t5", ["pull"])
    assert caught.value.status == 403
    with pytest.raises(Refused, match="already has a token named"):
        await tokens.create(BOB, "a", ["pull"]) and await tokens.create(BOB, "a", ["pull"])


async def test_expired_tokens_say_so_and_expiry_policies(setup) -> None:
    _, tokens, clock, _ = setup
    made = await tokens.create(BOB, "short", ["pull"], None, "2030-01-02T00:00:00Z")
    assert isinstance(await tokens.verify("bob", made.secret), Identity)
    clock.now += datetime.timedelta(days=2)
    with pytest.raises(CredentialRefused, match="expired at 2030-01-02T00:00:00Z"):
        await tokens.verify("bob", made.secret)
    tokens.settings = AccessTokenSettings(requireexpiry=True)
    with pytest.raises(Refused, match="requires an expiry"):
        await tokens.create(BOB, "forever", ["pull"])
    tokens.settings = AccessTokenSettings(unusedexpiry=30 * 86400)
    idle = await tokens.create(BOB, "idle", ["pull"])
    clock.now += datetime.timedelta(days=31)
    with pytest.raises(CredentialRefused, match="unused for more than 30 days"):
        await tokens.verify("bob", idle.secret)


async def test_list_without_secrets_last_use_batched_and_revoke(setup) -> None:
    manage, tokens, _, _ = setup
    made = await tokens.create(BOB, "ci", ["pull"], expires=LATER)
    await tokens.verify("bob", made.secret, "192.0.2.7")
    listed = await tokens.list(BOB)
    assert [(t.name, t.last_address) for t in listed] == [("ci", "192.0.2.7")]  # not written yet, shown
    await tokens.uses.flush()
    stored = await manage.db.read(lambda conn: conn.exec_driver_sql("SELECT last_address FROM tokens").scalar())
    assert stored == "192.0.2.7"
    with pytest.raises(Refused) as caught:
        await tokens.revoke(CAROL, made.record.id)  # not hers: as if it did not exist
    assert caught.value.status == 404
    with pytest.raises(Refused):
        await tokens.list(CAROL, user="bob")
    assert [t.name for t in await tokens.list(ALICE, user="bob")] == ["ci"]  # admins see everyone's
    await tokens.revoke(ALICE, made.record.id)
    await tokens.cache.refresh()
    assert await tokens.verify("bob", made.secret) is Verdict.REFUSED
    changes = await manage.db.read(lambda conn: store.list_changes(conn, None, 50))
    actions = [(c.action, c.target) for c in changes if c.action.startswith("token.")]
    assert ("token.create", "bob/ci") in actions and ("token.revoke", "bob/ci") in actions
    assert ("token.use", made.record.id) in actions  # the first use from an address
    assert made.secret not in str([(c.before, c.after) for c in changes])


async def test_robots_belong_to_the_namespace(setup) -> None:
    manage, tokens, _, _ = setup
    with pytest.raises(Refused, match="only owners"):
        await tokens.create_robot(BOB, "payments", "ci", ["pull", "push"])
    robot = await tokens.create_robot(CAROL, "payments", "ci", ["pull", "push"], "the CI pipeline")
    assert robot.created_by == "carol"
    made = await tokens.create(CAROL, "pipeline", ["pull", "push"], robot="robot+payments+ci")
    assert made.secret.startswith(ROBOT_PREFIX)
    with pytest.raises(Refused, match="may not delete"):
        await tokens.create(CAROL, "more", ["pull", "push", "delete"], robot="robot+payments+ci")
    with pytest.raises(Refused, match="inside its namespace"):
        await tokens.create(CAROL, "out", ["pull"], ["other/**"], robot="robot+payments+ci")
    identity = await tokens.verify("robot+payments+ci", made.secret)
    assert identity.scope.robot and identity.scope.narrow(frozenset(), "payments/api") == {"pull", "push"}
    assert identity.scope.narrow(frozenset(), "other/api") == frozenset()
    await manage.remove_user(ALICE, "carol")  # the person who made it leaves: nothing changes
    await tokens.cache.refresh()
    assert isinstance(await tokens.verify("robot+payments+ci", made.secret), Identity)
    assert [t.name for t in await tokens.list(ALICE, robot="robot+payments+ci")] == ["pipeline"]
    await tokens.remove_robot(ALICE, "robot+payments+ci")
    await tokens.cache.refresh()
    assert await tokens.verify("robot+payments+ci", made.secret) is Verdict.REFUSED


async def test_revocation_reaches_another_process_within_two_seconds(setup, tmp_path: Path) -> None:
    manage, tokens, _, _ = setup
    made = await tokens.create(BOB, "ci", ["pull"])
    other_db = Database(f"sqlite:///{tmp_path / 'moorage.db'}")
    other = AccessTokens(other_db, AccessTokenSettings(), lambda user, repo: frozenset())
    other_db.feed.start()
    try:
        assert isinstance(await other.verify("bob", made.secret), Identity)
        await tokens.revoke(BOB, made.record.id)
        started = asyncio.get_running_loop().time()
        while await other.verify("bob", made.secret) is not Verdict.REFUSED:
            assert asyncio.get_running_loop().time() - started < 2, "still accepted after 2 s"
            await asyncio.sleep(0.05)
    finally:
        await other_db.close()
