"""Retention: which tags a policy expires, which policy applies, and its config errors."""

from __future__ import annotations

import pytest

from registry.config import ConfigError, parse
from registry.maintenance.retention import Policy, Retention, parse_retention, with_namespaces

DAY = 86400.0
NOW = 1_000 * DAY
# tag -> pushed N days ago
AGES = {"latest": 0, "v1.0": 300, "v2.0": 10, "build-1": 50, "build-2": 40, "build-3": 30, "build-4": 3,
        "release-1": 400, "nightly": 1}
TAGS = {tag: NOW - days * DAY for tag, days in AGES.items()}


def test_keep_newest_keeps_the_most_recently_pushed() -> None:
    policy = Policy(("**",), keep_newest=3)
    # newest: latest(0), nightly(1), build-4(3); the rest go, oldest first
    assert policy.expired(TAGS, NOW) == ["release-1", "v1.0", "build-1", "build-2", "build-3", "v2.0"]


def test_protected_and_kept_patterns_are_never_expired_nor_counted() -> None:
    policy = Policy(("**",), keep_newest=1, keep=("release-*",), protect=("v*", "latest"))
    # candidates: build-1..4 and nightly; the newest of them (nightly) stays
    assert policy.expired(TAGS, NOW) == ["build-1", "build-2", "build-3", "build-4"]


def test_older_than_alone_and_with_keep_newest() -> None:
    assert Policy(("**",), older_than=35 * DAY).expired(TAGS, NOW) == ["release-1", "v1.0", "build-1", "build-2"]
    # the 5 newest stay even when old; of the rest only those older than 35 days go
    policy = Policy(("**",), keep_newest=5, older_than=35 * DAY, protect=("latest",))
    assert policy.expired(TAGS, NOW) == ["release-1", "v1.0", "build-1"]  # build-2 is 5th newest
    policy = Policy(("**",), keep_newest=7, older_than=35 * DAY)
    assert policy.expired(TAGS, NOW) == ["release-1", "v1.0"]


def test_first_matching_policy_decides_with_access_rule_globs() -> None:
    retention = Retention([
        Policy(("team/keep-all",), keep_newest=100),
        Policy(("team/*",), keep_newest=1),
        Policy(("**",), older_than=100 * DAY),
    ])
    assert retention.expired("team/keep-all", TAGS, NOW) == []
    assert len(retention.expired("team/app", TAGS, NOW)) == len(TAGS) - 1
    assert retention.expired("team/app/sub", TAGS, NOW) == ["release-1", "v1.0"]  # * stays in one component
    assert retention.policy_for("other") is retention.policies[2]


def test_config() -> None:
    raw = {"storage": {"maintenance": {"retention": {"policies": [
        {"repositories": ["ci/**"], "keepnewest": 10, "olderthan": "30d", "keeptags": ["stable"],
         "protect": ["v*", "latest"]}]}}}}
    retention = parse(raw).storage.retention
    assert retention is not None
    assert retention.policies == [Policy(("ci/**",), 10, ("stable",), 30 * DAY, ("v*", "latest"))]
    key = "storage.maintenance.retention"
    for bad, message in [
        ({"policies": {}}, f"{key}.policies"),
        ({"policies": [{"keepnewest": 1}]}, f"{key}.policies[0].repositories: required"),
        ({"policies": [{"repositories": ["a"]}]}, "set keepnewest, olderthan or both"),
        ({"policies": [{"repositories": ["A/B"], "keepnewest": 1}]}, "bad pattern"),
        ({"policies": [{"repositories": ["a"], "keepnewest": -1}]}, "keepnewest"),
        ({"policies": [{"repositories": ["a"], "olderthan": "soon"}]}, "olderthan"),
        ({"policies": [{"repositories": ["a"], "keepnewest": 1, "protect": ["a/b"]}]}, "bad tag pattern"),
        ({"policies": [{"repositories": ["a"], "keepnewest": 1, "keep": 1}]}, "unknown key"),
        ({"rules": []}, "unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_retention(bad)


def test_namespaces_retention_comes_after_the_file_and_the_closest_decides(caplog: pytest.LogCaptureFixture
                                                                           ) -> None:
    file = Retention([Policy(("payments/legacy/**",), keep_newest=100)])
    retention = with_namespaces(file, {
        "payments": {"keepnewest": 1, "protect": ["v*"]},
        "payments/tools": {"olderthan": "100d"},
        "broken": {"keepnewest": "many"},  # stored before a check tightened: skipped, not fatal
    })
    assert retention is not None
    assert retention.expired("payments/legacy/app", TAGS, NOW) == []  # the file's policy comes first
    assert retention.expired("payments/api", TAGS, NOW) == ["release-1", "build-1", "build-2", "build-3",
                                                             "build-4", "nightly"]
    assert retention.expired("payments/tools/x", TAGS, NOW) == ["release-1", "v1.0"]  # the closest namespace's
    assert retention.expired("payments", TAGS, NOW) == retention.expired("payments/api", TAGS, NOW)
    assert not retention.applies("paymentsx/app") and not retention.applies("broken/app")
    assert "namespace broken: retention skipped" in caplog.text
    assert with_namespaces(None, {}) is None and with_namespaces(file, {}) == file
