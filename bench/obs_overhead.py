"""What metrics and JSON logs cost: two Moorage servers, one with observability off (no metrics, access log
off, text format), one with it on (metrics on the debug address, JSON access log of every request to its
log file), measured in interleaved A/B rounds so that the shared machine's noise hits both alike.

    python -m bench.obs_overhead [--rounds 5] [--seconds 5] [--push-mib 512]

Cases: manifest GET by tag at 16 connections, ``GET /v2/`` at 16 connections, one monolithic push of
``--push-mib`` MiB. Prints each round and the median per case, and the cost of "on" relative to "off".
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.blobs import MIB, push
from bench.loadgen import raw_request, run_load
from bench.manifests import ACCEPT, OCI_MANIFEST, make_image
from bench.payload import Payloads
from bench.servers import HOST, Server, free_port
from bench.wire import Conn

CONCURRENCY = 16
PORTS = range(25000, 25100)  # obs's range on the shared machine


def servers(workdir: Path, taken: set[int]) -> dict[str, Server]:
    moorage = [sys.executable, "-m", "registry.cli", "serve"]
    off = Server("off", moorage, workdir / "off", free_port(PORTS.start, taken, PORTS))
    debug_port = free_port(PORTS.start, taken, PORTS)
    on = Server("on", moorage, workdir / "on", free_port(PORTS.start, taken, PORTS), extra={
        "log.level": "info", "log.formatter": "json", "log.accesslog.disabled": "false",
        "log.fields.service": "registry",
        "http.debug.addr": f"{HOST}:{debug_port}", "http.debug.prometheus.enabled": "true",
    })
    return {"off": off, "on": on}


def manifest_get(srv: Server, repo: str, seconds: float) -> float:
    host = f"{HOST}:{srv.port}"
    request = raw_request("GET", f"/v2/{repo}/manifests/bench", host, {"Accept": ACCEPT})
    result = run_load(HOST, srv.port, CONCURRENCY, lambda _i: (request, False), seconds=seconds, expect=(200,))
    assert result.errors == 0, result.statuses
    return result.rate


def version_check(srv: Server, seconds: float) -> float:
    request = raw_request("GET", "/v2/", f"{HOST}:{srv.port}")
    result = run_load(HOST, srv.port, CONCURRENCY, lambda _i: (request, False), seconds=seconds, expect=(200,))
    assert result.errors == 0, result.statuses
    return result.rate


def push_rate(srv: Server, payloads: Payloads, size: int) -> float:
    conn = Conn(HOST, srv.port)
    tail, digest = payloads.new(size)
    started = time.perf_counter()
    push(conn, "bench/push", payloads, size, tail, digest)
    wall = time.perf_counter() - started
    conn.request("DELETE", f"/v2/bench/push/blobs/{digest}", expect=(202,))
    conn.close()
    srv.drop_blob(digest)
    return size / MIB / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--push-mib", type=int, default=512)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="moorage-obs-bench-"))
    taken: set[int] = set()
    both = servers(workdir, taken)
    size = args.push_mib * MIB
    payloads = Payloads([size], "obs-overhead")
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for srv in both.values():
            srv.workdir.mkdir(parents=True)
            srv.start()
            img = make_image(srv, "bench/app")
            conn = Conn(HOST, srv.port)
            conn.request("PUT", "/v2/bench/app/manifests/bench", {"Content-Type": OCI_MANIFEST},
                         [img.manifest(0)], len(img.manifest(0)), expect=(201,))
            conn.close()
        cases: dict[str, Callable[[Server], float]] = {
            "manifest GET c16 (req/s)": lambda s: manifest_get(s, "bench/app", args.seconds),
            "GET /v2/ c16 (req/s)": lambda s: version_check(s, args.seconds),
            f"push {args.push_mib} MiB (MiB/s)": lambda s: push_rate(s, payloads, size),
        }
        for round_ in range(args.rounds):
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            for case, run in cases.items():
                for name in order:
                    value = run(both[name])
                    results.setdefault((case, name), []).append(value)
                    print(f"round {round_ + 1} {case:<26} {name:>3}: {value:10.1f}", flush=True)
        print("\n| case | off (median) | on (median) | cost of on | rounds (range) |")
        print("| --- | ---: | ---: | ---: | --- |")
        for case in cases:
            off, on = statistics.median(results[(case, "off")]), statistics.median(results[(case, "on")])
            spread = f"off {min(results[(case, 'off')]):.0f}-{max(results[(case, 'off')]):.0f}, " \
                     f"on {min(results[(case, 'on')]):.0f}-{max(results[(case, 'on')]):.0f}"
            print(f"| {case} | {off:.1f} | {on:.1f} | {(off - on) / off * 100:+.1f} % | {args.rounds} ({spread}) |")
    finally:
        for srv in both.values():
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
