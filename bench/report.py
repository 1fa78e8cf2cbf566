"""Result rows, the comparison table, targets (PASS/MISS) and JSON output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

A, B = "distribution", "moorage"


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
        """Moorage's advantage: M/D for rates, D/M for times and sizes."""
        a, b = self.results.get(A), self.results.get(B)
        if a is None or b is None or not a.value or not b.value:
            return None
        return b.value / a.value if self.higher_better else a.value / b.value


@dataclass
class Target:
    label: str
    section: str
    name: str
    need: float

    def verdict(self, rows: list[Row]) -> tuple[float | None, str]:
        for r in rows:
            if r.section == self.section and r.name == self.name:
                ratio = r.ratio
                if ratio is None:
                    return None, "n/a"
                bad = any(m.errors for m in r.results.values())
                return ratio, ("PASS" if ratio >= self.need and not bad else "MISS")
        return None, "not run"


TARGETS = [
    Target("push 512 MiB single stream (monolithic)", "push", "mono 512MiB c1", 3.0),
    Target("push 512 MiB single stream (chunked)", "push", "chunked 512MiB c1", 3.0),
    Target("pull 512 MiB c1", "pull", "512MiB c1", 1.0),
    Target("pull 512 MiB c8", "pull", "512MiB c8", 1.0),
    Target("manifest GET by tag c16", "manifest", "GET tag c16", 4.0),
    Target("GET /v2/ c64", "v2", "GET /v2/ c64", 5.0),
    Target("catalog 10000 repos, n=100 walk", "catalog", "walk 10000 repos n=100", 20.0),
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


def table(rows: list[Row]) -> str:
    """Fixed-width comparison table."""
    head = ["section", "case", "unit", "Distribution", "Moorage", "M adv.", "D p50/p99ms", "M p50/p99ms",
            "D cpu", "M cpu", "cpu unit", "client cpu", "notes"]
    body = []
    for r in rows:
        a, b = r.results.get(A), r.results.get(B)
        ccpu = max((m.client_cpu / m.wall for m in (a, b) if m and m.wall), default=None)
        notes = "; ".join(
            f"{tag}: {m.note}" + (f" ERRORS={m.errors}" if m.errors else "")
            for tag, m in (("D", a), ("M", b)) if m and (m.note or m.errors)
        )
        body.append([
            r.section, r.name, r.unit,
            _fmt(a.value) if a else "-", _fmt(b.value) if b else "-",
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            _lat(a), _lat(b),
            _fmt(a.cpu_per(r.cpu_unit)) if a and r.cpu_unit else "",
            _fmt(b.cpu_per(r.cpu_unit)) if b and r.cpu_unit else "",
            r.cpu_unit, f"{ccpu:.0%}" if ccpu is not None else "", notes,
        ])
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    right = {3, 4, 5, 6, 7, 8, 9, 11}

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=False))
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs]
        return "  ".join(out) + "  " + cells[-1]

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def targets_table(rows: list[Row]) -> str:
    out = ["target (Moorage advantage over Distribution)        need    measured  verdict"]
    for t in TARGETS:
        ratio, verdict = t.verdict(rows)
        shown = f"{ratio:.2f}x" if ratio is not None else "-"
        out.append(f"{t.label:<52} >={t.need:<5.1f} {shown:>8}  {verdict}")
    return "\n".join(out)


def write_json(path: Path, meta: dict, rows: list[Row]) -> None:
    data = {
        "meta": meta,
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "targets": [
            {"label": t.label, "need": t.need, "ratio": t.verdict(rows)[0], "verdict": t.verdict(rows)[1]}
            for t in TARGETS
        ],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
