"""Blob sections: push (monolithic and chunked), pull, 1 MiB range GETs."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

from bench import procstat
from bench.core import Bench, run_threads, thread_measure
from bench.payload import Payloads
from bench.report import Measure
from bench.servers import HOST, Server
from bench.wire import Conn, target_of, with_query

MIB = 1 << 20
OCTET = {"Content-Type": "application/octet-stream"}


def push(conn: Conn, repo: str, pl: Payloads, size: int, tail: bytes, digest: str, chunk: int = 0) -> int:
    """Push one blob: POST + PUT with the body (chunk=0) or POST + PATCHes + empty PUT."""
    r = conn.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    loc = target_of(r.headers["location"])
    if chunk:
        for start in range(0, size, chunk):
            end = min(size, start + chunk)
            hdrs = {**OCTET, "Content-Range": f"{start}-{end - 1}"}
            body = pl.pieces(size, tail, start, end)
            r = conn.request("PATCH", loc, hdrs, body, end - start, expect=(202,))
            loc = target_of(r.headers["location"])
        conn.request("PUT", with_query(loc, digest=digest), OCTET, expect=(201,))
    else:
        conn.request("PUT", with_query(loc, digest=digest), OCTET, pl.pieces(size, tail), size, expect=(201,))
    return size


def label(size: int) -> str:
    return f"{size // MIB}MiB" if size >= MIB else f"{size // 1024}KiB"


def _push_case(b: Bench, size: int, conc: int, mode: str, chunk: int) -> None:
    pushed: dict[str, list[str]] = {}

    def fn(srv: Server) -> Measure:
        digests = pushed.setdefault(srv.name, [])

        def op(conn: Conn, _k: int) -> int:
            tail, digest = b.payloads.new(size)
            digests.append(digest)
            return push(conn, "bench/push", b.payloads, size, tail, digest, chunk)

        return thread_measure(run_threads(srv, conc, b.settings.seconds, op), "MB/s")

    def cleanup(srv: Server) -> None:
        for d in pushed.pop(srv.name, []):
            srv.drop_blob(d)
        if srv.s3 is not None:
            srv.s3.reclaim()  # radosgw: free the deleted data (held in RAM) before the next run

    b.case("push", f"{mode} {label(size)} c{conc}", "MB/s", fn, cpu_unit="s/GB", total_key="push",
           cleanup=cleanup)


def _disk_probe(path: Path, base: memoryview, size: int) -> float:
    """MB/s of a sequential write + fdatasync of ``size`` bytes to a new file."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for off in range(0, size, 4 * MIB):
            os.write(fd, base[off : min(size, off + 4 * MIB)])
        os.fdatasync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return size / (time.perf_counter() - t0) / 1e6


def disk_reference(b: Bench, size: int, when: str) -> None:
    """Note what the storage disk does right now (two probes back to back; the machine is shared)."""
    path = next(iter(b.servers.values())).workdir.parent / "disk-probe"
    rates = [_disk_probe(path, b.payloads.base, size) for _ in range(2)]
    line = (f"disk reference {when}: write + fdatasync of {label(size)} in the storage directory "
            f"{rates[0]:.0f} / {rates[1]:.0f} MB/s (a push that fsyncs cannot beat this)")
    b.notes.append(line)
    print("  " + line, flush=True)


def section_push(b: Bench) -> None:
    s = b.settings
    on_disk = s.storage == "filesystem"
    if on_disk:
        disk_reference(b, max(s.push_sizes), "before push")
    else:
        line = f"no disk reference: storage is S3 ({s.storage}); a push's ceiling is the S3 server's"
        b.notes.append(line)
        print("  " + line, flush=True)
    skipped = []
    for size in s.push_sizes:
        for conc in s.push_conc:
            if s.push_inflight_max and size * conc > s.push_inflight_max:
                skipped.append(f"{label(size)} c{conc}")
                continue
            _push_case(b, size, conc, "mono", 0)
            _push_case(b, size, conc, "chunked", s.chunk)
    if skipped:
        line = (f"push {', '.join(skipped)} skipped: more than {label(s.push_inflight_max)} in flight "
                "(--push-inflight-mib 0 runs them; the S3 default keeps a run under 10 minutes)")
        b.notes.append(line)
        print("  " + line, flush=True)
    if s.rss_push:
        _memory_case(b, s.rss_push)
    if on_disk:
        disk_reference(b, max(s.push_sizes), "after push")


def _memory_case(b: Bench, size: int) -> None:
    """Each server's memory at idle, then during one monolithic push of ``size`` bytes.

    Each server is restarted first: the figures are what a server holds when it starts and what a push
    costs it, not what the earlier sections left in it (Moorage keeps bounded caches, e.g. ~30 MiB of
    directory listings after the 10 000-repository catalog); the run's overall peak RSS is the summary's
    "peak RSS whole run". Memory is PSS summed over the server's processes (procstat), sampled every 0.1 s
    during the push; the sum of each process's peak RSS is printed beside it."""
    idle: dict[str, Measure] = {}
    peaks: dict[str, Measure] = {}
    pss_peaks: dict[str, Measure] = {}

    def fn(srv: Server) -> Measure:
        conn = Conn(HOST, srv.port)
        tail, digest = b.payloads.new(size)
        srv.reset_peak()
        t0 = time.perf_counter()
        try:
            with procstat.PeakPss(srv.pid) as sampled:
                push(conn, "bench/rss", b.payloads, size, tail, digest)
        finally:
            conn.close()
        wall = time.perf_counter() - t0
        peaks[srv.name] = Measure(srv.peak_rss())
        pss_peaks[srv.name] = Measure(sampled.peak, note=f"{srv.processes()} processes")
        srv.drop_blob(digest)
        return Measure(size / wall / 1e6, work=float(size), wall=wall)

    for srv in b.servers.values():  # before the case: its CPU figures are read from the running process
        srv.stop()
        srv.start()
    time.sleep(1.0)  # start-up work (imports, first requests' allocations) settles
    for srv in b.servers.values():
        once = procstat.resident_once_mib(srv.pid)
        note = f"{srv.processes()} processes, RSS {procstat.rss_mib(srv.pid):.0f} MiB"
        note += f", resident pages counted once {once:.0f} MiB" if once is not None else ""
        idle[srv.name] = Measure(srv.pss(), note=note)
    b.info_row("push", "idle PSS (fresh start)", "MiB", idle)
    b.case("push", f"mono {label(size)} c1", "MB/s", fn, cpu_unit="s/GB", reps=1)
    b.info_row("push", f"peak PSS mono {label(size)} c1", "MiB", pss_peaks)
    b.info_row("push", f"peak RSS mono {label(size)} c1", "MiB", peaks)


def _seed_blob(b: Bench, srv: Server, repo: str, size: int) -> str:
    """Push one blob (untimed) and check a full GET returns 200 and the same bytes (hashed as they arrive)."""
    conn = Conn(HOST, srv.port)
    tail, digest = b.payloads.new(size)
    push(conn, repo, b.payloads, size, tail, digest)
    h = hashlib.sha256()
    r = conn.request("GET", f"/v2/{repo}/blobs/{digest}", discard=True, sink=h.update, expect=(200,))
    h.update(r.body)  # a chunked reply is returned whole, a Content-Length one went through the sink
    conn.close()
    if r.length != size:
        raise RuntimeError(f"{srv.name}: pulled {r.length} bytes of a {size}-byte blob")
    if "sha256:" + h.hexdigest() != digest:
        raise RuntimeError(f"{srv.name}: pulled blob does not match its digest")
    return digest


def _pull_case(b: Bench, size: int, conc: int, digests: dict[str, str]) -> None:
    def fn(srv: Server) -> Measure:
        target = f"/v2/bench/pull/blobs/{digests[srv.name]}"

        def op(conn: Conn, _k: int) -> int:
            r = conn.request("GET", target, discard=True, expect=(200,))
            if r.length != size:
                raise RuntimeError(f"short body {r.length} != {size}")
            return size

        return thread_measure(run_threads(srv, conc, b.settings.seconds, op), "MB/s")

    b.case("pull", f"{label(size)} c{conc}", "MB/s", fn, cpu_unit="s/GB", total_key="pull")


def section_pull(b: Bench) -> None:
    for size in b.settings.pull_sizes:
        digests = {name: _seed_blob(b, srv, "bench/pull", size) for name, srv in b.servers.items()}
        for conc in b.settings.pull_conc:
            _pull_case(b, size, conc, digests)
        for name, srv in b.servers.items():  # keep the storage (radosgw: RAM) bounded
            srv.drop_blob(digests[name])
            if srv.s3 is not None:
                srv.s3.reclaim()


def section_range(b: Bench) -> None:
    s = b.settings
    size = min(64 * MIB, max(s.pull_sizes))
    span = min(MIB, size // 4)
    tails: dict[str, tuple[bytes, str]] = {}
    for name, srv in b.servers.items():
        conn = Conn(HOST, srv.port)
        tail, digest = b.payloads.new(size)
        push(conn, "bench/range", b.payloads, size, tail, digest)
        start = size - span - 7  # a range that crosses into the unique tail
        r = conn.request("GET", f"/v2/bench/range/blobs/{digest}",
                         {"Range": f"bytes={start}-{start + span - 1}"}, expect=(206,))
        if r.body != b"".join(bytes(p) for p in b.payloads.pieces(size, tail, start, start + span)):
            raise RuntimeError(f"{name}: range GET returned wrong bytes")
        conn.close()
        tails[name] = (tail, digest)

    for conc in s.range_conc:

        def fn(srv: Server, conc: int = conc) -> Measure:
            target = f"/v2/bench/range/blobs/{tails[srv.name][1]}"
            rng = random.Random(conc)

            def op(conn: Conn, _k: int) -> int:
                a = rng.randrange(0, size - span)
                r = conn.request("GET", target, {"Range": f"bytes={a}-{a + span - 1}"}, discard=True,
                                 expect=(206,))
                if r.length != span:
                    raise RuntimeError(f"short range {r.length}")
                return span

            run = run_threads(srv, conc, s.seconds, op)
            m = thread_measure(run, "req/s")
            m.note = f"{run.bytes / run.wall / 1e6:.0f} MB/s" + (f"; {m.note}" if m.note else "")
            return m

        b.case("range", f"{label(span)} ranges c{conc}", "req/s", fn, cpu_unit="us/req")
