"""``moorage replicate run RULE -c CONFIG [--dry-run]``: runs here when no replica holds the rule, hands the
run to the replica that does and follows it otherwise; exit 0 only when every item succeeded."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.cli import main
from registry.config import load
from registry.instance import Registry
from registry.replication import runner as runner_module
from registry.replication.executions import ExecutionStore
from registry.replication.worker import RuleWorker

from .conftest import REMOTE_URL, Recorder, asgi_client, manifest, push_image, registries, run


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Images here, a remote Moorage ``there`` (in process), and a config file naming both."""
    holder: dict[str, Any] = {}

    async def prepare() -> None:
        async with registries(tmp_path) as regs:
            for i in range(3):
                await push_image(regs.client_here, f"team/app{i}", "v1", [f"layer {i}".encode()])
    run(prepare())
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "here")}},
        "replication": {"remotes": [{"name": "there", "url": REMOTE_URL}], "poll": "0.2s", "lease": "2s",
                        "rules": [{"name": "to-there", "remote": "there", "repositories": ["team/**"]}]},
    }))
    from registry.config import parse
    from registry.http.app import create_app

    there = create_app(parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "there")}}}))
    recorder = Recorder(there)
    holder.update(there=there, recorder=recorder, config=config, root=tmp_path)
    monkeypatch.setattr(runner_module, "remote_http", lambda remote, connections: asgi_client(recorder, REMOTE_URL))
    return holder


def there_has(setup: dict[str, Any], repo: str) -> bool:
    async def look() -> bool:
        async with asgi_client(setup["there"], REMOTE_URL) as client:
            return (await manifest(client, repo, "v1"))[0] == 200
    return bool(asyncio.run(look()))


def test_a_run_here_copies_everything_and_says_so(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replicate", "run", "to-there", "-c", str(setup["config"])]) == 0
    out = capsys.readouterr()
    assert "succeeded" in out.out and "3 copied" in out.out
    assert all(there_has(setup, f"team/app{i}") for i in range(3))
    assert main(["replicate", "run", "to-there", "-c", str(setup["config"])]) == 0
    assert "3 unchanged" in capsys.readouterr().out


def test_failures_exit_1_with_each_items_error(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    setup["recorder"].fail = lambda m, p, q: 507 if m == "PUT" and "app1" in p else None
    assert main(["replicate", "run", "to-there", "-c", str(setup["config"])]) == 1
    err = capsys.readouterr().err
    assert "failed: team/app1:v1 -> team/app1:" in err and "HTTP 507" in err


def test_dry_run_lists_and_writes_nothing(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replicate", "run", "to-there", "-c", str(setup["config"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would copy") == 3 and "3 items, 0 failed" in out
    assert not there_has(setup, "team/app0")
    assert not [m for m, _, _ in setup["recorder"].requests if m in ("PUT", "POST", "PATCH", "DELETE")]


def test_unknown_rule(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replicate", "run", "nope", "-c", str(setup["config"])]) == 2
    assert "no replication rule 'nope' (rules: to-there)" in capsys.readouterr().err


def test_a_rule_another_replica_holds_is_run_there_and_followed(setup: dict[str, Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A `moorage serve` replica holds the rule: the CLI queues the run, that replica runs it, the CLI
    reports it (and does not run it itself)."""
    config = load(setup["config"], {})
    replication = config.replication.replication()
    assert replication is not None
    codes: list[int] = []

    async def replica() -> None:
        registry = Registry.build(config)
        worker = RuleWorker(replication.rules["to-there"], registry, ExecutionStore(registry.driver), replication,
                            None)
        assert await worker.lease.hold()
        cli = threading.Thread(target=lambda: codes.append(main(["replicate", "run", "to-there", "-c",
                                                                 str(setup["config"])])))
        cli.start()
        while cli.is_alive():
            await worker.step()
            await asyncio.sleep(0.1)
        cli.join()
        await worker.close()
        await registry.close()

    asyncio.run(asyncio.wait_for(replica(), 60))
    captured = capsys.readouterr()
    assert codes == [0]
    assert "runs to-there: queued there as execution" in captured.err
    assert "succeeded" in captured.out and "3 copied" in captured.out
    assert all(there_has(setup, f"team/app{i}") for i in range(3))
