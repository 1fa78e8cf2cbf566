"""The ``replication`` section, the rules' filters and names, schedules, event items and the bandwidth
limit (no registry involved)."""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from configkit import ConfigError
from registry.config import load, parse
from registry.replication.items import COPY, DELETE, Item
from registry.replication.plan import plan_events, wanted
from registry.replication.rules import Remote, Rule
from registry.replication.schedule import next_run
from registry.replication.throttle import Throttle

REMOTE = {"name": "dr", "url": "https://dr.example.internal:5000/", "username": "replicator", "password": "pw"}


def section(rules: list[dict[str, Any]], remotes: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"replication": {"remotes": remotes if remotes is not None else [REMOTE], "rules": rules, **extra}}


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        parse(raw).replication.replication()
    return str(e.value)


def test_the_issues_example_parses_and_credentials_stay_hidden() -> None:
    config = parse(section([{"name": "to-dr", "direction": "push", "remote": "dr", "repositories": ["payments/**"],
                             "tags": ["*"], "trigger": "event", "deletes": True}])).replication.replication()
    assert config is not None
    rule = config.rules["to-dr"]
    assert (rule.direction, rule.trigger, rule.deletes, rule.remote.url) == ("push", "event", True,
                                                                             "https://dr.example.internal:5000")
    assert rule.remote.password == "pw" and "pw" not in repr(rule) and "pw" not in str(rule.summary())
    assert parse({}).replication.replication() is None


@pytest.mark.parametrize(("rules", "remotes", "expected"), [
    ([{"name": "r", "remote": "nope"}], None, "replication.rules[0].remote: no remote named 'nope'"),
    ([{"name": "r", "remote": "dr", "direction": "pull", "trigger": "event"}], None, "replication.rules[0].trigger"),
    ([{"name": "r", "remote": "dr", "trigger": "schedule"}], None, "needs interval or cron"),
    ([{"name": "r", "remote": "dr", "trigger": "schedule", "cron": "every day"}], None, "replication.rules[0].cron"),
    ([{"name": "r", "remote": "dr", "interval": "1h"}], None, "apply to trigger: schedule only"),
    ([{"name": "r", "remote": "dr", "tagregex": "("}], None, "replication.rules[0].tagregex"),
    ([{"name": "r", "remote": "dr", "repositories": ["UPPER/**"]}], None, "replication.rules[0].repositories"),
    ([{"name": "r", "remote": "dr", "bandwidth": "fast"}], None, "replication.rules[0].bandwidth"),
    ([{"name": "r", "remote": "dr", "chunksize": "10KB"}], None, "replication.rules[0].chunksize"),
    ([{"name": "a b", "remote": "dr"}], None, "replication.rules[0].name"),
    ([{"name": "r", "remote": "dr"}, {"name": "r", "remote": "dr"}], None, "replication.rules: names must be unique"),
    ([{"name": "r", "remote": "dr"}], [{**REMOTE, "url": "ftp://x"}], "replication.remotes[0].url"),
    ([{"name": "r", "remote": "dr"}], [{**REMOTE, "passwordfile": "/x"}], "password or passwordfile"),
    ([{"name": "r", "remote": "dr"}], [{**REMOTE, "insecure": True, "cacert": "/x"}], "exclude each other"),
    ([{"name": "r", "remote": "dr", "destination": {"prefix": "Bad Name"}}], None, "destination.prefix"),
])
def test_errors_name_the_key(rules: list[dict[str, Any]], remotes: list[dict[str, Any]] | None, expected: str) -> None:
    assert expected in error(section(rules, remotes))


def test_passwordfile_and_environment_overrides(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    remote = {"name": "dr", "url": "http://dr:5000", "username": "u", "passwordfile": str(secret)}
    config = parse(section([{"name": "r", "remote": "dr"}], [remote])).replication.replication()
    assert config is not None and config.rules["r"].remote.password == "from-file"
    missing = {**remote, "passwordfile": str(tmp_path / "missing")}
    assert "replication.remotes[0].passwordfile: cannot read" in error(section([{"name": "r", "remote": "dr"}], [missing]))
    path = tmp_path / "config.yml"
    path.write_text("replication:\n  remotes: [{name: dr, url: 'http://dr:5000', username: u}]\n"
                    "  rules: [{name: r, remote: dr}]\n")
    loaded = load(path, {"REGISTRY_REPLICATION_REMOTES_0_PASSWORD": "from-env",
                         "REGISTRY_REPLICATION_RULES_0_CONCURRENCY": "9"}).replication.replication()
    assert loaded is not None and loaded.rules["r"].remote.password == "from-env"
    assert loaded.rules["r"].concurrency == 9


def test_repository_and_tag_filters_and_destination_names() -> None:
    import re

    rule = Rule("r", "push", Remote("dr", "http://dr"), repositories=("payments/**", "shared/*"),
                exclude_repositories=("payments/legacy/**",), tags=("v*", "latest"), exclude_tags=("*-rc*",),
                tag_regex=re.compile(r"v\d+\.\d+|latest"), strip="payments", prefix="dr")
    assert rule.takes_repository("payments/api") and rule.takes_repository("payments/a/b")
    assert not rule.takes_repository("payments/legacy/old") and not rule.takes_repository("shared/x")  # not below strip
    assert [t for t in ("v1.0", "v1.0-rc1", "v1", "latest", "dev", "sha256-" + "a" * 64) if rule.takes_tag(t)] == [
        "v1.0", "latest"]
    assert rule.destination("payments/api") == "dr/api" and rule.source("dr/api") == "payments/api"
    plain = Rule("p", "push", Remote("dr", "http://dr"))
    assert plain.destination("a/b") == "a/b" and plain.takes_repository("a/b") and plain.takes_tag("anything")
    assert Rule("l", "pull", Remote("dr", "http://dr"), repositories=("library/nginx",)).literal_repositories == (
        "library/nginx",)
    assert plain.literal_repositories is None


def test_schedules_by_interval_and_cron() -> None:
    remote = Remote("dr", "http://dr")
    hourly = Rule("h", "pull", remote, trigger="schedule", interval=3600.0)
    assert next_run(hourly, None, 1000.0) == 1000.0  # never ran: now
    assert next_run(hourly, 1000.0, 1500.0) == 4600.0
    nightly = Rule("n", "pull", remote, trigger="schedule", cron="30 2 * * *")
    last = datetime.datetime(2024, 5, 1, 2, 30, tzinfo=datetime.UTC).timestamp()
    expected = datetime.datetime(2024, 5, 2, 2, 30, tzinfo=datetime.UTC).timestamp()
    assert next_run(nightly, last, last + 60) == expected


def test_event_items_last_word_wins_and_filters_apply() -> None:
    rule = Rule("e", "push", Remote("dr", "http://dr"), repositories=("app/**",), tags=("v*",), deletes=True,
                prefix="copy")

    def event(action: str, repository: str, tag: str | None = None, digest: str | None = None) -> dict[str, Any]:
        target = {"repository": repository, **({"tag": tag} if tag else {}), **({"digest": digest} if digest else {})}
        return {"action": action, "target": target, "timestamp": "2024-05-01T10:00:00.5Z"}

    items = plan_events(rule, [event("push", "app/a", "v1", "sha256:1"), event("delete", "app/a", "v1"),
                               event("push", "app/b", "v2", "sha256:2"), event("push", "app/b", None, "sha256:3"),
                               event("push", "app/c", "dev", "sha256:4"), event("push", "other", "v1", "sha256:5"),
                               event("push", "app/a", "v1", "sha256:6")])
    assert items == [
        Item(COPY, "app/b", "v2", "copy/app/b", items[0].pushed),
        Item(COPY, "app/b", "sha256:3", "copy/app/b", items[1].pushed, referrer_only=True),
        Item(COPY, "app/a", "v1", "copy/app/a", items[2].pushed),
    ]
    assert items[0].pushed == datetime.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=datetime.UTC).timestamp()
    assert plan_events(rule, [event("delete", "app/a", "v1")]) == [Item(DELETE, "app/a", "v1", "copy/app/a",
                                                                          items[0].pushed)]
    assert wanted(rule, "push", "manifest", "app/a", "v1") and not wanted(rule, "push", "blob", "app/a", None)
    assert not wanted(rule, "pull", "manifest", "app/a", "v1") and not wanted(rule, "push", "manifest", "x", "v1")


def test_the_bandwidth_limit_is_shared_by_parallel_transfers() -> None:
    async def send(throttle: Throttle, pieces: int) -> None:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(pieces):
                yield b"x" * 50_000

        async for _ in throttle.limit(chunks()):
            pass

    async def timed(throttle: Throttle) -> float:
        started = time.monotonic()
        await asyncio.gather(send(throttle, 8), send(throttle, 8))  # 800 kB
        return time.monotonic() - started

    assert asyncio.run(timed(Throttle(400_000))) >= 1.5  # 400 kB/s: 2 s less the burst, for both together
    assert asyncio.run(asyncio.wait_for(timed(Throttle(0)), 5.0)) < 1.5  # unlimited
