"""The bench's own logic: three-way ratios and goals, the offline v3 build setup, payloads past the buffer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench import distribution_v3
from bench.limits import fractions
from bench.payload import Payloads
from bench.report import TARGETS, V3, A, B, Measure, Row, table, targets_table

MIB = 1 << 20


def row(section: str, name: str, unit: str, values: dict[str, float], higher_better: bool = True) -> Row:
    return Row(section, name, unit, higher_better, "", {k: Measure(v) for k, v in values.items()})


def test_ratios_against_each_reference() -> None:
    rate = row("v2", "GET /v2/ c64", "req/s", {A: 1000, V3: 8000, B: 10000})
    assert rate.ratio_vs(A) == 10.0
    assert rate.ratio_vs(V3) == 1.25
    seconds = row("catalog", "walk 10000 repos n=100", "s", {A: 15.0, V3: 3.0, B: 0.5}, higher_better=False)
    assert seconds.ratio_vs(V3) == 6.0
    text = table([rate, seconds])
    assert "M/2.8.2" in text and "M/v3" in text and "1.25x" in text


def test_goals_judged_against_their_reference_only() -> None:
    rows = [
        row("v2", "GET /v2/ c64", "req/s", {V3: 8000, B: 10000}),
        row("push", "peak PSS mono 2048MiB c1", "MiB", {V3: 40, B: 160}, higher_better=False),
    ]
    text = targets_table(rows)
    v2_line = next(line for line in text.splitlines() if line.startswith("GET /v2/ c64"))
    assert "v3" in v2_line and "MISS" in v2_line  # 1.25x < 1.5x
    assert "2.8.2" not in text  # 2.8.2 did not run: its goals are not listed
    pss = next(line for line in text.splitlines() if "peak PSS" in line)
    assert "MISS" in pss  # 160 MiB > 150 MiB
    assert {t.ref for t in TARGETS} == {A, V3, B}


def test_memory_goal_is_a_multiple_of_the_references() -> None:
    """Idle memory: Moorage's PSS over all its processes at most 1.5 times v3's."""
    line = lambda rows: next(x for x in targets_table(rows).splitlines() if x.startswith("memory at idle"))  # noqa: E731
    assert "PASS" in line([row("push", "idle PSS (fresh start)", "MiB", {V3: 44, B: 60}, higher_better=False)])
    missed = line([row("push", "idle PSS (fresh start)", "MiB", {V3: 44, B: 70}, higher_better=False)])
    assert "MISS" in missed and "<=1.5x" in missed and "1.59x" in missed


def test_fractions_of_limits() -> None:
    limits = {"uvicorn bare GET /v2/ c64": {"value": 20000.0}}
    text = fractions([row("v2", "GET /v2/ c64", "req/s", {V3: 8000, B: 10000})], limits, "uvicorn")
    assert "50% of uvicorn bare GET /v2/ c64" in text


def test_v3_build_is_offline_and_vendored(tmp_path: Path) -> None:
    env = distribution_v3.build_env("/opt/go/bin/go", tmp_path)
    assert env["GOPROXY"] == "off" and env["GOFLAGS"] == "-mod=vendor" and env["CGO_ENABLED"] == "0"
    assert env["GOTOOLCHAIN"] == "local" and env["GOCACHE"].startswith(str(tmp_path))
    cmd = distribution_v3.build_command("go", "v3.1.1", tmp_path / "registry-v3")
    assert cmd[:3] == ["go", "build", "-mod=vendor"] and cmd[-1] == "./cmd/registry"


def test_v3_build_refuses_a_tree_without_vendored_modules(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(f"module {distribution_v3.MODULE}\n\ngo 1.25.0\n")
    (tmp_path / "cmd" / "registry").mkdir(parents=True)
    with pytest.raises(SystemExit, match="vendor"):
        distribution_v3.check_source(tmp_path)
    (tmp_path / "go.mod").write_text("module example.com/other\n")
    with pytest.raises(SystemExit, match="not a distribution"):
        distribution_v3.check_source(tmp_path)


def test_payload_larger_than_its_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.payload._BASE_MAX", MIB)
    monkeypatch.setattr("bench.payload._TILE", MIB // 4)
    pl = Payloads([MIB, 3 * MIB + 5], "t")
    assert len(pl.base) == MIB
    tail, digest = pl.new(3 * MIB + 5)
    pieces = list(pl.pieces(3 * MIB + 5, tail))
    data = b"".join(bytes(p) for p in pieces)
    assert len(data) == 3 * MIB + 5 and data[:MIB] == data[MIB : 2 * MIB]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    middle = b"".join(bytes(p) for p in pl.pieces(3 * MIB + 5, tail, MIB - 3, 2 * MIB + 7))
    assert middle == data[MIB - 3 : 2 * MIB + 7]
