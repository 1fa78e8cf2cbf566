"""Access rules: ordering, globs, namespaces, groups, admins and name tricks."""

from __future__ import annotations

import pytest

from auth.rules import AccessRules

ALL = {"pull", "push", "delete", "*"}

RULES = {
    "groups": {"ci": ["bot"], "ops": ["olga"]},
    "admins": ["root", "group:ops"],
    "rules": [
        {"repositories": ["{user}/**"], "who": ["authenticated"], "actions": ["*"]},
        {"repositories": ["secret/**"], "who": ["authenticated", "anonymous"], "actions": []},
        {"repositories": ["ci/*"], "who": ["group:ci"], "actions": ["pull", "push"]},
        {"repositories": ["library/*", "ci/*"], "who": ["anonymous", "authenticated"], "actions": ["pull"]},
        {"repositories": ["shared/?x"], "who": ["alice"], "actions": "push"},
    ],
}


@pytest.fixture
def rules() -> AccessRules:
    return AccessRules(RULES)


def actions(rules: AccessRules, user: str | None, name: str) -> set[str]:
    return set(rules.actions(user, "repository", name))


def test_user_namespace(rules: AccessRules) -> None:
    assert actions(rules, "alice", "alice/app") == ALL
    assert actions(rules, "alice", "alice/deep/er/app") == ALL
    assert actions(rules, "alice", "bob/app") == set()
    assert actions(rules, "alice", "alice") == set()  # "{user}/**" is what is under the namespace
    assert actions(rules, None, "alice/app") == set()


def test_first_matching_rule_decides_and_empty_actions_deny(rules: AccessRules) -> None:
    assert actions(rules, "bot", "ci/app") == {"pull", "push"}  # rule 3 before rule 4
    assert actions(rules, "alice", "ci/app") == {"pull"}  # rule 3 is not for alice, rule 4 is
    assert actions(rules, "alice", "secret/x") == set()
    assert actions(rules, "root", "secret/x") == ALL  # admins are above the rules


def test_single_star_stays_in_one_component(rules: AccessRules) -> None:
    assert actions(rules, None, "library/busybox") == {"pull"}
    assert actions(rules, None, "library/a/b") == set()
    assert actions(rules, "alice", "shared/ax") == {"push"}
    assert actions(rules, "alice", "shared/abx") == set()
    assert actions(rules, "bob", "shared/ax") == set()


def test_anonymous_and_authenticated_are_distinct(rules: AccessRules) -> None:
    assert actions(rules, None, "library/x") == {"pull"}
    assert actions(rules, None, "ci/x") == {"pull"}
    assert actions(rules, None, "other/x") == set()


@pytest.mark.parametrize(
    "name",
    [
        "alice/../bob/app", "alice/%2e%2e/bob", "alice//app", "Alice/app", "alice/App", "alice/./x",
        "/alice/app", "alice/app/", "alice/a\nb", "alice/" + "a" * 260, "alice/app:tag", "alice/app@sha",
    ],
)
def test_names_outside_the_grammar_match_nothing(rules: AccessRules, name: str) -> None:
    assert actions(rules, "alice", name) == set()
    assert actions(rules, "root", name) == set()


@pytest.mark.parametrize("user", ["bob/x", "Bob", "b*", "..", "a.b/c", "x y"])
def test_odd_user_names_never_get_a_namespace(user: str) -> None:
    rules = AccessRules({"rules": [{"repositories": ["{user}/**"], "who": ["authenticated"],
                                    "actions": ["*"]}]})
    assert actions(rules, user, "bob/x/app") == set()
    assert actions(rules, user, "b/app") == set()


def test_glob_characters_in_user_name_are_literal() -> None:
    rules = AccessRules({"rules": [{"repositories": ["{user}/**"], "who": ["authenticated"],
                                    "actions": ["pull"]}]})
    assert actions(rules, "a.b", "a.b/app") == {"pull"}
    assert actions(rules, "a.b", "axb/app") == set()


def test_catalog_defaults_to_authenticated_and_admins(rules: AccessRules) -> None:
    assert rules.actions("alice", "registry", "catalog") == {"*"}
    assert rules.actions("olga", "registry", "catalog") == {"*"}
    assert rules.actions(None, "registry", "catalog") == set()
    assert rules.actions("alice", "registry", "other") == set()
    only_admins = AccessRules({**RULES, "catalog": []})
    assert only_admins.actions("alice", "registry", "catalog") == set()
    assert only_admins.actions("root", "registry", "catalog") == {"*"}


def test_unknown_resource_types_get_nothing(rules: AccessRules) -> None:
    assert rules.actions("root", "repository(plugin)", "alice/app") == set()


def test_admins_by_user_and_by_group(rules: AccessRules) -> None:
    assert rules.is_admin("root") and rules.is_admin("olga")
    assert not rules.is_admin("alice") and not rules.is_admin(None)


def test_grant_is_the_intersection(rules: AccessRules) -> None:
    assert rules.grant("alice", "repository", "library/x", {"pull", "push"}) == {"pull"}
    assert rules.grant("alice", "repository", "alice/x", {"*", "pull"}) == {"*", "pull"}
    assert rules.grant("bot", "repository", "ci/x", {"*"}) == set()  # * only when everything is allowed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rule": []}, "auth.access.rule: unknown key"),
        ({"rules": {}}, "auth.access.rules: expected a list"),
        ({"rules": ["x"]}, r"auth.access.rules\[0\]: expected a mapping"),
        ({"rules": [{"who": ["a"], "actions": []}]}, r"auth.access.rules\[0\].repositories: required"),
        ({"rules": [{"repositories": "a", "who": "b", "actions": ["fly"]}]}, r"rules\[0\].actions: unknown"),
        ({"rules": [{"repositories": "A/*", "who": "b", "actions": []}]}, r"rules\[0\].repositories: bad"),
        ({"rules": [{"repositories": "[ab]", "who": "b", "actions": []}]}, r"rules\[0\].repositories: bad"),
        ({"rules": [{"repositories": "a", "who": "group:x", "actions": []}]}, "unknown group 'x'"),
        ({"rules": [{"repositories": "a", "who": "b", "actions": [], "x": 1}]}, r"rules\[0\].x: unknown"),
        ({"admins": ["authenticated"]}, "auth.access.admins: 'authenticated' is not allowed"),
        ({"groups": ["x"]}, "auth.access.groups: expected a mapping"),
    ],
)
def test_config_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccessRules(raw)
