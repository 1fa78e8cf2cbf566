"""Result rows, the comparison table, targets (PASS/MISS) and JSON output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

A, V3, B = "distribution", "distribution-v3", "moorage"  # 2.8.2 (Debian), v3 built from source, us
REFERENCES = (A, V3)
SHORT = {A: "2.8.2", V3: "v3", B: "Moorage"}


@dataclass
class Measure:
    """One server's figure for one case."""

    value: float
    work: float = 0.0  # bytes moved or requests done (for CPU normalisation)
    p50: float | None = None  # ms
    p99: float | None = None  # ms
    errors: int = 0
    note: str = ""
    server_cpu: float = 0.0  # seconds, filled by the runner
    client_cpu: float = 0.0  # seconds, filled by the runner
    wall: float = 0.0  # seconds, filled by the runner

    def cpu_per(self, unit: str) -> float | None:
        if not self.work:
            return None
        if unit == "s/GB":
            return self.server_cpu / (self.work / 1e9)
        if unit == "us/req":
            return self.server_cpu * 1e6 / self.work
        return None


@dataclass
class Row:
    section: str
    name: str
    unit: str
    higher_better: bool = True
    cpu_unit: str = ""
    results: dict[str, Measure] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Moorage's advantage over Distribution 2.8.2 (see ``ratio_vs``)."""
        return self.ratio_vs(A)

    def ratio_vs(self, ref: str) -> float | None:
        """Moorage's advantage over ``ref``: M/ref for rates, ref/M for times and sizes."""
        a, b = self.results.get(ref), self.results.get(B)
        if a is None or b is None or not a.value or not b.value:
            return None
        return b.value / a.value if self.higher_better else a.value / b.value

    def cpu_ratio_vs(self, ref: str) -> float | None:
        """ref's server CPU per unit of work over Moorage's (above 1: Moorage spends less)."""
        a, b = self.results.get(ref), self.results.get(B)
        ca = a.cpu_per(self.cpu_unit) if a else None
        cb = b.cpu_per(self.cpu_unit) if b else None
        return ca / cb if ca and cb else None


@dataclass
class Target:
    """A goal for one row: Moorage's advantage over ``ref`` of at least ``need``; with ``ceiling``, Moorage's
    own value of at most ``need`` (in the row's unit); with ``within``, Moorage's value at most ``need``
    times the reference's (memory against a reference's)."""

    label: str
    section: str
    name: str
    need: float
    ref: str = A  # B (Moorage itself) for a ceiling
    ceiling: bool = False
    within: bool = False

    def verdict(self, rows: list[Row]) -> tuple[float | None, str]:
        for r in rows:
            if r.section == self.section and r.name == self.name:
                bad = any(m.errors for m in r.results.values())
                if self.ceiling:
                    mine = r.results.get(B)
                    if mine is None or not mine.value:
                        return None, "n/a"
                    return mine.value, ("PASS" if mine.value <= self.need and not bad else "MISS")
                if self.within:
                    mine, theirs = r.results.get(B), r.results.get(self.ref)
                    if mine is None or theirs is None or not theirs.value:
                        return None, "n/a"
                    times = mine.value / theirs.value
                    return times, ("PASS" if times <= self.need and not bad else "MISS")
                ratio = r.ratio_vs(self.ref)
                if ratio is None:
                    return None, "n/a"
                return ratio, ("PASS" if ratio >= self.need and not bad else "MISS")
        return None, "not run"

    def describe_need(self) -> str:
        if self.ceiling:
            return f"<={self.need:<6g}"
        return f"<={self.need:.1f}x" if self.within else f">={self.need:.1f}x"


TARGETS = [  # the previous goals, against the Debian package
    Target("push 512 MiB single stream (monolithic)", "push", "mono 512MiB c1", 3.0),
    Target("push 512 MiB single stream (chunked)", "push", "chunked 512MiB c1", 3.0),
    Target("pull 512 MiB c1", "pull", "512MiB c1", 1.0),
    Target("pull 512 MiB c8", "pull", "512MiB c8", 1.0),
    Target("manifest GET by tag c16", "manifest", "GET tag c16", 4.0),
    Target("GET /v2/ c64", "v2", "GET /v2/ c64", 5.0),
    Target("catalog 10000 repos, n=100 walk", "catalog", "walk 10000 repos n=100", 20.0),
    # issue 23, goal 1: Moorage as installed against Distribution v3 as installed (both on their defaults)
    Target("push 512 MiB mono c1", "push", "mono 512MiB c1", 1.2, V3),
    Target("server CPU per GB pushed (v3/Moorage)", "summary", "server CPU per GB push", 1.0, V3),
    Target("pull 512 MiB c1", "pull", "512MiB c1", 1.5, V3),
    Target("manifest GET by tag c16", "manifest", "GET tag c16", 1.5, V3),
    Target("GET /v2/ c64", "v2", "GET /v2/ c64", 1.5, V3),
    Target("manifest PUT c16", "manifest", "PUT c16", 1.0, V3),
    Target("catalog 10000 repos, n=100 walk", "catalog", "walk 10000 repos n=100", 5.0, V3),
    Target("memory at idle, PSS of all processes (x v3's)", "push", "idle PSS (fresh start)", 1.5, V3, within=True),
    Target("peak PSS during a 2 GiB push (MiB)", "push", "peak PSS mono 2048MiB c1", 150.0, B, ceiling=True),
]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _lat(m: Measure | None) -> str:
    if m is None or m.p50 is None:
        return ""
    return f"{_fmt(m.p50)}/{_fmt(m.p99)}"


def servers_in(rows: list[Row]) -> list[str]:
    """The servers that have results, references first."""
    seen = {name for r in rows for name in r.results}
    return [n for n in (*REFERENCES, B) if n in seen]


def table(rows: list[Row]) -> str:
    """Fixed-width comparison table: each server's figure, Moorage's advantage over each reference,
    latencies and server CPU per unit of work."""
    names = servers_in(rows)
    refs = [n for n in names if n != B]
    head = ["section", "case", "unit", *(SHORT[n] for n in names), *(f"M/{SHORT[n]}" for n in refs),
            *(f"{SHORT[n]} p50/p99ms" for n in names), *(f"{SHORT[n]} cpu" for n in names), "cpu unit",
            "client cpu", "notes"]
    body = []
    for r in rows:
        ms = [r.results.get(n) for n in names]
        ccpu = max((m.client_cpu / m.wall for m in ms if m and m.wall), default=None)
        notes = "; ".join(
            f"{SHORT[n]}: {m.note}" + (f" ERRORS={m.errors}" if m.errors else "")
            for n, m in zip(names, ms, strict=True) if m and (m.note or m.errors)
        )
        ratios = [r.ratio_vs(n) for n in refs]
        body.append([
            r.section, r.name, r.unit,
            *(_fmt(m.value) if m else "-" for m in ms),
            *(f"{x:.2f}x" if x is not None else "-" for x in ratios),
            *(_lat(m) for m in ms),
            *(_fmt(m.cpu_per(r.cpu_unit)) if m and r.cpu_unit else "" for m in ms),
            r.cpu_unit, f"{ccpu:.0%}" if ccpu is not None else "", notes,
        ])
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    left = {0, 1, 2, len(head) - 3}

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=False))
        out = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(out) + "  " + cells[-1]

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def targets_table(rows: list[Row]) -> str:
    """PASS/MISS for the goals whose reference ran."""
    ran = set(servers_in(rows))
    out = ["target                                            against  need     measured  verdict"]
    for t in TARGETS:
        if t.ref not in ran:
            continue
        value, verdict = t.verdict(rows)
        need = t.describe_need()
        if t.ceiling:
            shown = _fmt(value)
        else:
            shown = f"{value:.2f}x" if value is not None else "-"
        against = "-" if t.ceiling else SHORT[t.ref]
        out.append(f"{t.label:<49} {against:<8} {need:<8} {shown:>8}  {verdict}")
    return "\n".join(out)


def write_json(path: Path, meta: dict, rows: list[Row]) -> None:
    ran = servers_in(rows)
    refs = [n for n in ran if n != B]
    data = {
        "meta": meta,
        "rows": [{**asdict(r), "ratio": {n: r.ratio_vs(n) for n in refs}} for r in rows],
        "targets": [
            {"label": t.label, "against": t.ref, "need": t.need, "ceiling": t.ceiling, "within": t.within,
             "value": t.verdict(rows)[0], "verdict": t.verdict(rows)[1]}
            for t in TARGETS if t.ref in ran
        ],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
