"""The interleaved runner: every case runs on every server back to back, rotating which goes first."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.payload import Payloads
from bench.report import SHORT, B, Measure, Row
from bench.servers import HOST, Server
from bench.wire import Conn


@dataclass
class Settings:
    quick: bool
    seconds: float  # per throughput / rate case
    reps: int
    push_sizes: list[int]
    pull_sizes: list[int]
    push_conc: list[int]
    pull_conc: list[int]
    range_conc: list[int]
    manifest_conc: list[int]
    v2_conc: int
    chunk: int
    tags: int
    repos: int
    repos_big: int
    populate_conc: int
    wrk: str | None
    wrk_threads: int
    storage: str = "filesystem"  # or a description of the S3 back end (``--s3``)
    push_inflight_max: int = 0  # skip push cases whose size x concurrency exceeds this (0: none skipped)
    rss_push: int = 0  # size of one more monolithic push, measured for the server's peak RSS (0: none)


@dataclass
class Bench:
    """Holds the servers (references and Moorage), the payloads and the rows measured so far."""

    servers: dict[str, Server]
    settings: Settings
    payloads: Payloads
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    totals: dict[str, dict[str, float]] = field(default_factory=dict)  # "push:moorage" -> cpu, bytes
    backend_cpu: Callable[[], float] | None = None  # CPU seconds of the S3 server we started (if any)
    _flip: int = 0

    def case(
        self,
        section: str,
        name: str,
        unit: str,
        fn: Callable[[Server], Measure],
        *,
        higher_better: bool = True,
        cpu_unit: str = "",
        reps: int | None = None,
        total_key: str = "",
        cleanup: Callable[[Server], None] | None = None,
    ) -> Row:
        """Measure ``fn`` on every server (``reps`` times each, interleaved) and keep the median."""
        names = list(self.servers)
        runs: dict[str, list[Measure]] = {name: [] for name in names}
        for _ in range(reps or self.settings.reps):
            k = self._flip % len(names)
            order = names[k:] + names[:k]  # each server goes first in turn: drift hits all alike
            self._flip += 1
            for who in order:
                srv = self.servers[who]
                bcpu0 = self.backend_cpu() if self.backend_cpu else 0.0
                cpu0, ccpu0, t0 = srv.cpu(), time.process_time(), time.perf_counter()
                try:
                    m = fn(srv)
                except Exception as exc:  # noqa: BLE001 - a failing server must not stop the whole run
                    m = Measure(0.0, errors=1, note=f"{type(exc).__name__}: {str(exc)[:120]}")
                m.wall = m.wall or time.perf_counter() - t0
                m.server_cpu = srv.cpu() - cpu0
                m.client_cpu = time.process_time() - ccpu0
                if self.backend_cpu:
                    m.note = _with_backend_cpu(m, self.backend_cpu() - bcpu0, cpu_unit)
                if cleanup is not None:
                    cleanup(srv)
                runs[who].append(m)
                if total_key:
                    tot = self.totals.setdefault(f"{total_key}:{who}", {"cpu": 0.0, "work": 0.0})
                    tot["cpu"] += m.server_cpu
                    tot["work"] += m.work
        row = Row(section, name, unit, higher_better, cpu_unit)
        for who, ms in runs.items():
            vals = sorted(ms, key=lambda m: m.value)
            row.results[who] = vals[len(vals) // 2] if len(vals) % 2 else _median_pick(vals)
        self.rows.append(row)
        _progress(row)
        return row

    def info_row(self, section: str, name: str, unit: str, values: dict[str, Measure],
                 higher_better: bool = False) -> None:
        """A row measured outside ``case`` (setup timings, memory)."""
        row = Row(section, name, unit, higher_better, "", values)
        self.rows.append(row)
        _progress(row)


def _with_backend_cpu(m: Measure, seconds: float, cpu_unit: str) -> str:
    """The note, prefixed with the S3 server's CPU for this run (per GB when the row is per GB)."""
    if cpu_unit == "s/GB" and m.work:
        text = f"S3 cpu {seconds / (m.work / 1e9):.2f} s/GB"
    else:
        text = f"S3 cpu {seconds:.1f} s"
    return f"{text}; {m.note}" if m.note else text


def _median_pick(vals: list[Measure]) -> Measure:
    med = statistics.median(m.value for m in vals)
    return min(vals, key=lambda m: abs(m.value - med))


def _progress(row: Row) -> None:
    values = "  ".join(f"{SHORT[n]}={m.value:>9.1f}" for n, m in row.results.items())
    ratios = " ".join(f"M/{SHORT[n]} {x:.2f}x" for n in row.results
                      if n != B and (x := row.ratio_vs(n)) is not None)
    err = " ERRORS" if any(m.errors for m in row.results.values()) else ""
    print(f"  {row.section:<9} {row.name:<28} {values}  {row.unit:<6} {ratios}{err}", flush=True)


@dataclass
class ThreadRun:
    bytes: int = 0
    ops: int = 0
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)


def run_threads(srv: Server, conc: int, seconds: float, op: Callable[[Conn, int], int],
                max_ops: int = 100_000) -> ThreadRun:
    """``conc`` threads, each with its own connection, call ``op(conn, k)`` until ``seconds`` pass.

    Every thread finishes at least one op; ``op`` returns the bytes it moved.
    """
    res = ThreadRun()
    lock = threading.Lock()
    barrier = threading.Barrier(conc + 1)
    start = [0.0]

    def worker() -> None:
        conn = Conn(HOST, srv.port)
        moved = ops = 0
        barrier.wait()
        try:
            while ops < max_ops:
                moved += op(conn, ops)
                ops += 1
                if time.perf_counter() - start[0] >= seconds:
                    break
        except Exception as exc:  # noqa: BLE001 - reported in the row
            with lock:
                res.errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
        finally:
            conn.close()
        with lock:
            res.bytes += moved
            res.ops += ops

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    res.wall = time.perf_counter() - start[0]
    return res


def thread_measure(run: ThreadRun, unit: str) -> Measure:
    """MB/s (decimal) or req/s from a thread run."""
    if unit == "MB/s":
        value = run.bytes / run.wall / 1e6 if run.wall else 0.0
        work = float(run.bytes)
    else:
        value = run.ops / run.wall if run.wall else 0.0
        work = float(run.ops)
    note = run.errors[0] if run.errors else ""
    return Measure(value, work=work, errors=len(run.errors), note=note, wall=run.wall)
