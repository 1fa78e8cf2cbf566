"""What metrics and JSON logs cost: three Moorage servers, "off" (no metrics, access log off, text format),
"metrics" (Prometheus metrics on the debug address) and "on" (metrics and a JSON access log line for every
request, written to its log file), measured in interleaved rounds (each server first, middle and last in
turn) so that the shared machine's noise hits all alike.

    python -m bench.obs_overhead [--rounds 5] [--seconds 5] [--push-mib 512]

Cases: manifest GET by tag at 16 connections, ``GET /v2/`` at 16 connections, one monolithic push of
``--push-mib`` MiB. Each case gives a rate and the server's CPU time per unit of work (user + system of
its process tree): on a machine shared with other jobs the rate swings with the neighbours' load, the
CPU cost per request much less. Prints each round, then medians and the cost relative to "off".
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
    """off: nothing; metrics: Prometheus on the debug address; on: metrics and a JSON access log line a request."""
    moorage = [sys.executable, "-m", "registry.cli", "serve"]

    def metrics() -> dict[str, str]:
        return {"http.debug.addr": f"{HOST}:{free_port(PORTS.start, taken, PORTS)}",
                "http.debug.prometheus.enabled": "true"}

    return {
        "off": Server("off", moorage, workdir / "off", free_port(PORTS.start, taken, PORTS)),
        "metrics": Server("metrics", moorage, workdir / "metrics", free_port(PORTS.start, taken, PORTS),
                          extra=metrics()),
        "on": Server("on", moorage, workdir / "on", free_port(PORTS.start, taken, PORTS), extra={
            **metrics(), "log.level": "info", "log.formatter": "json", "log.accesslog.disabled": "false",
            "log.fields.service": "registry"}),
    }


Result = tuple[float, float]  # (rate, server CPU microseconds per request or seconds per GiB)


def load(srv: Server, target: str, headers: dict[str, str], seconds: float) -> Result:
    request = raw_request("GET", target, f"{HOST}:{srv.port}", headers)
    cpu = srv.cpu()
    result = run_load(HOST, srv.port, CONCURRENCY, lambda _i: (request, False), seconds=seconds, expect=(200,))
    assert result.errors == 0, result.statuses
    return result.rate, (srv.cpu() - cpu) / result.done * 1e6


def push_rate(srv: Server, payloads: Payloads, size: int) -> Result:
    conn = Conn(HOST, srv.port)
    tail, digest = payloads.new(size)
    cpu = srv.cpu()
    started = time.perf_counter()
    push(conn, "bench/push", payloads, size, tail, digest)
    wall = time.perf_counter() - started
    used = srv.cpu() - cpu
    conn.request("DELETE", f"/v2/bench/push/blobs/{digest}", expect=(202,))
    conn.close()
    srv.drop_blob(digest)
    return size / MIB / wall, used / (size / (1 << 30))


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
        cases: dict[str, Callable[[Server], Result]] = {
            "manifest GET c16": lambda s: load(s, "/v2/bench/app/manifests/bench", {"Accept": ACCEPT}, args.seconds),
            "GET /v2/ c16": lambda s: load(s, "/v2/", {}, args.seconds),
            f"push {args.push_mib} MiB": lambda s: push_rate(s, payloads, size),
        }
        units = {"manifest GET c16": ("req/s", "CPU us/req"), "GET /v2/ c16": ("req/s", "CPU us/req"),
                 f"push {args.push_mib} MiB": ("MiB/s", "CPU s/GiB")}
        for round_ in range(args.rounds):
            names = list(both)
            order = names[round_ % 3:] + names[: round_ % 3]  # each server first, middle and last in turn
            for case, run in cases.items():
                for name in order:
                    rate, cpu = run(both[name])
                    results.setdefault((case, name), []).append(rate)
                    results.setdefault((case + " cpu", name), []).append(cpu)
                    print(f"round {round_ + 1} {case:<18} {name:>7}: {rate:9.1f} {units[case][0]:<6} "
                          f"{cpu:9.2f} {units[case][1]}", flush=True)
        print("\n| case | measure | off | metrics | metrics + JSON log | range off / metrics / on |")
        print("| --- | --- | ---: | ---: | ---: | --- |")
        for case in cases:
            for key, unit in ((case, units[case][0]), (case + " cpu", units[case][1])):
                median = {name: statistics.median(results[(key, name)]) for name in both}
                cells = [f"{median['off']:.1f}"] + [
                    f"{median[name]:.1f} ({(median[name] - median['off']) / median['off'] * 100:+.0f} %)"
                    for name in ("metrics", "on")]
                spread = " / ".join(f"{min(results[(key, n)]):.1f}-{max(results[(key, n)]):.1f}" for n in both)
                print(f"| {case} | {unit} | {' | '.join(cells)} | {spread} |")
    finally:
        for srv in both.values():
            srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
