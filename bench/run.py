"""CLI: ``python -m bench [--against 2.8.2,v3] [--quick] [--only SECTION,...] [--s3 moto|radosgw|URL]``.

Starts Moorage (``moorage serve``) and the references, Distribution 2.8.2 (``docker-registry serve``, the
Debian package) and/or Distribution v3 (built from source by ``python -m bench build-v3 SRC``), each with
temporary filesystem storage (or, with ``--s3``, its own bucket of one S3 server) on loopback ports
15400-15499, runs every selected case on all of them back to back (rotating which goes first) and prints one
table with every figure and Moorage's advantage over each reference.

``python -m bench build-v3 SRC`` builds the v3 binary; ``python -m bench limits`` measures this machine's
ceilings (sha256, disk, loopback, bare ASGI servers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import blobs, distribution_v3, limits, listing, manifests, procstat
from bench import s3 as s3mod
from bench.core import Bench, Settings
from bench.payload import Payloads
from bench.report import V3, A, B, Measure, table, targets_table, write_json
from bench.servers import Server, free_port

MIB = 1 << 20
SECTIONS: dict[str, Callable[[Bench], None]] = {
    "v2": manifests.section_v2,
    "manifest": manifests.section_manifest,
    "tags": listing.section_tags,
    "catalog": listing.section_catalog,
    "range": blobs.section_range,
    "pull": blobs.section_pull,
    "push": blobs.section_push,
}


def settings(args: argparse.Namespace) -> Settings:
    wrk = None if args.no_wrk else shutil.which("wrk")
    inflight = args.push_inflight_mib
    if inflight < 0:  # S3 default: 8 x 512 MiB pushes take 10+ minutes (moto, radosgw) and radosgw ~16 GB of RAM
        inflight = 512 if args.s3 else 0
    if args.s3 and not args.quick:
        # every byte goes through an S3 server on the same 2 cores: 64 and 512 MiB blobs at c1 and c8
        return Settings(quick=False, seconds=args.seconds or 3.0, reps=args.reps,
                        push_sizes=[64 * MIB, 512 * MIB], pull_sizes=[64 * MIB, 512 * MIB], push_conc=[1, 8],
                        pull_conc=[1, 8], range_conc=[1, 8], manifest_conc=[1, 16, 64], v2_conc=64,
                        chunk=args.chunk_mib * MIB, tags=5000, repos=5000, repos_big=10000, populate_conc=16,
                        wrk=wrk, wrk_threads=args.wrk_threads, push_inflight_max=inflight * MIB)
    if args.goals:
        # only the cases the goals judge (issue 23): one size and concurrency each, the 10,000-repo catalog,
        # and the memory at idle and during a 2 GiB push
        return Settings(quick=False, seconds=args.seconds or 3.0, reps=args.reps, push_sizes=[512 * MIB],
                        pull_sizes=[512 * MIB], push_conc=[1], pull_conc=[1], range_conc=[], manifest_conc=[16],
                        v2_conc=64, chunk=args.chunk_mib * MIB, tags=0, repos=10000, repos_big=10000,
                        populate_conc=16, wrk=wrk, wrk_threads=args.wrk_threads, push_inflight_max=inflight * MIB)
    if args.quick:
        return Settings(quick=True, seconds=args.seconds or 0.5, reps=args.reps, push_sizes=[MIB, 8 * MIB],
                        pull_sizes=[8 * MIB], push_conc=[1, 4], pull_conc=[1, 4], range_conc=[4],
                        manifest_conc=[1, 16], v2_conc=64, chunk=2 * MIB, tags=200, repos=200, repos_big=400,
                        populate_conc=16, wrk=wrk, wrk_threads=args.wrk_threads,
                        push_inflight_max=inflight * MIB)
    return Settings(quick=False, seconds=args.seconds or 3.0, reps=args.reps,
                    push_sizes=[MIB, 64 * MIB, 512 * MIB], pull_sizes=[64 * MIB, 512 * MIB], push_conc=[1, 8],
                    pull_conc=[1, 8, 32], range_conc=[1, 8], manifest_conc=[1, 16, 64], v2_conc=64,
                    chunk=args.chunk_mib * MIB, tags=5000, repos=5000, repos_big=10000, populate_conc=16,
                    wrk=wrk, wrk_threads=args.wrk_threads, push_inflight_max=inflight * MIB)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and short cases (smoke test)")
    p.add_argument("--goals", action="store_true", help="only the cases the goals judge (sections v2, manifest, "
                   "catalog, pull, push at one size and concurrency each)")
    p.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--moorage-cmd", default="", help="command that serves Moorage; the config path is appended "
                   "(default: 'moorage serve')")
    p.add_argument("--moorage-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra dotted config key for Moorage only, e.g. http.server=granian")
    p.add_argument("--against", default="", metavar="2.8.2,v3",
                   help="references to run: 2.8.2 (--distribution-cmd), v3 (--v3-binary); default: each that "
                   "is installed")
    p.add_argument("--distribution-cmd", default="docker-registry serve", help="serves Distribution 2.8.2")
    p.add_argument("--v3-binary", type=Path, default=distribution_v3.default_binary(),
                   help="Distribution v3's registry binary (python -m bench build-v3 SRC puts it here)")
    p.add_argument("--json", type=Path, help="also write results as JSON")
    p.add_argument("--seconds", type=float, default=0.0, help="minimum duration of each case (3, quick 0.5)")
    p.add_argument("--reps", type=int, default=1, help="repetitions per case and server (median kept)")
    p.add_argument("--chunk-mib", type=int, default=16, help="PATCH size for chunked pushes")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--no-wrk", action="store_true", help="do not cross-check with wrk even if installed")
    p.add_argument("--workdir", type=Path, help="parent of the temporary storage (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary storage and logs")
    p.add_argument("--s3", default="", metavar="moto|radosgw|URL",
                   help="store on S3 instead of the filesystem: start a moto server, start a single-node Ceph "
                   "radosgw, or use the endpoint http[s]://[KEY:SECRET@]HOST:PORT; each registry gets its own "
                   "bucket, redirects are disabled (blob GETs stream through the registry)")
    p.add_argument("--s3-bucket", default="", help="with --s3 URL: use this existing bucket (one rootdirectory "
                   "per registry, removed afterwards) instead of creating and removing two buckets")
    p.add_argument("--radosgw-memstore-gib", type=float, default=0.0,
                   help="RAM for radosgw's in-memory OSD (default: 12, or half the available memory if less)")
    p.add_argument("--push-inflight-mib", type=int, default=-1, metavar="MIB",
                   help="skip push cases whose size x concurrency exceeds MIB (0: none; default 512 with "
                   "--s3, else 0)")
    p.add_argument("--rss-push-mib", type=int, default=-1, metavar="MIB",
                   help="one more monolithic push of this size for each server's peak RSS (default 2048, quick "
                   "and S3 0: none)")
    p.add_argument("--ports", default="15400-15499", metavar="FIRST-LAST",
                   help="loopback ports for everything the bench starts (registries from the bottom, the S3 "
                   "server in the top 20)")
    return p.parse_args(argv)


def port_range(text: str) -> range:
    try:
        first, last = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise SystemExit(f"--ports {text!r}: expected FIRST-LAST") from None
    if first < 1024 or last > 65535 or last - first + 1 < 30:
        raise SystemExit(f"--ports {text!r}: need at least 30 ports above 1023")
    return range(first, last + 1)


def moorage_cmd(arg: str) -> list[str]:
    if arg:
        return shlex.split(arg)
    exe = shutil.which("moorage")
    if exe is None:
        raise SystemExit("moorage is not on PATH: pip install -e . (or pass --moorage-cmd)")
    return [exe, "serve"]


def references(args: argparse.Namespace) -> dict[str, list[str]]:
    """The reference servers' commands, 2.8.2 first."""
    chosen = [x.strip() for x in args.against.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in ("2.8.2", "v3")]
    if unknown:
        raise SystemExit(f"--against {args.against!r}: choose from 2.8.2, v3")
    old = shlex.split(args.distribution_cmd)
    have_old = bool(old) and shutil.which(old[0]) is not None
    have_v3 = args.v3_binary.is_file()
    if not chosen:
        chosen = [x for x, ok in (("2.8.2", have_old), ("v3", have_v3)) if ok]
        if not chosen:
            raise SystemExit("no reference registry: install docker-registry (Distribution 2.8.2) or build v3 "
                             "with python -m bench build-v3 SRC")
    if "2.8.2" in chosen and not have_old:
        raise SystemExit(f"{old[0] if old else '--distribution-cmd'} not found (Debian: apt-get install "
                         "docker-registry)")
    if "v3" in chosen and not have_v3:
        raise SystemExit(f"{args.v3_binary} not found: python -m bench build-v3 SRC builds it")
    cmds: dict[str, list[str]] = {}
    if "2.8.2" in chosen:
        cmds[A] = old
    if "v3" in chosen:
        cmds[V3] = [str(args.v3_binary), "serve"]
    return cmds


def _sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    default = ["v2", "manifest", "catalog", "pull", "push"] if args.goals else list(SECTIONS)
    chosen = [x.strip() for x in args.only.split(",") if x.strip()] or default
    unknown = [x for x in chosen if x not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    chosen = [x for x in SECTIONS if x in chosen]
    s = settings(args)
    rss = args.rss_push_mib if args.rss_push_mib >= 0 else (0 if args.quick or args.s3 else 2048)
    s = dataclasses.replace(s, rss_push=rss * MIB)
    extra = dict(kv.split("=", 1) for kv in args.moorage_set)
    signal.signal(signal.SIGTERM, _sigterm)

    if args.s3_bucket and args.s3 in ("", "moto", "radosgw"):
        raise SystemExit("--s3-bucket goes with --s3 URL (moto and radosgw get fresh buckets)")
    ports = port_range(args.ports)
    s3_ports = range(ports.stop - 20, ports.stop)  # the S3 server's block; registries stay below it
    reg_ports = range(ports.start, s3_ports.start)
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-", dir=args.workdir))
    taken: set[int] = set()
    servers: dict[str, Server] = {}
    for name, cmd in references(args).items():
        servers[name] = Server(name, cmd, work / name, free_port(ports.start + 1, taken, reg_ports))
        if name == V3:
            servers[name].env_set = dict(distribution_v3.RUN_ENV)
    servers[B] = Server(B, moorage_cmd(args.moorage_cmd), work / B, free_port(ports.start + 1, taken, reg_ports),
                        extra)
    started = dt.datetime.now(dt.UTC)
    where = f"s3={re.sub(r'//[^/@]*@', '//', args.s3)}" if args.s3 else f"storage={work}"  # no keys shown
    print(f"moorage bench {started:%Y-%m-%d %H:%M:%S}Z  sections={','.join(chosen)}  {where}", flush=True)
    if V3 in servers:
        print(f"  Distribution v3: {distribution_v3.describe(args.v3_binary)}", flush=True)
    b: Bench | None = None
    backend: s3mod.S3Backend | None = None
    s3_note = ""
    try:
        if args.s3:
            memstore = int(args.radosgw_memstore_gib * s3mod.GIB)
            backend = s3mod.start(args.s3, work / "s3", s3_ports, memstore)
            s3_note = _setup_s3(backend, servers, args.s3_bucket, started)
            s = dataclasses.replace(s, storage=backend.describe())
            backend.watch_memory()
            print("  " + s3_note, flush=True)
        for srv in servers.values():
            srv.start()
            print(f"  started {srv.name}: {' '.join(srv.cmd)} (pid {srv.pid}, port {srv.port})", flush=True)
        t0 = time.perf_counter()
        sizes = sorted({*s.push_sizes, *s.pull_sizes, min(64 * MIB, max(s.pull_sizes))} | ({s.rss_push} - {0}))
        b = Bench(servers, s, Payloads(sizes, started.strftime("%H%M%S")))
        if s3_note:
            b.notes.append(s3_note)
        if backend is not None and backend.procs:
            pids = [p.pid for p in backend.procs]
            b.backend_cpu = lambda: sum(procstat.cpu_seconds(pid) for pid in pids)
        print(f"  payloads ready in {time.perf_counter() - t0:.1f}s", flush=True)
        peaks = {name: srv.peak_rss() for name, srv in servers.items()}
        if {"v2", "manifest"} & set(chosen):
            manifests.client_ceiling(b, free_port(ports.start + 3, taken, reg_ports))
        for name in chosen:
            print(f"[{name}]", flush=True)
            for srv in servers.values():
                srv.reset_peak()
            try:
                SECTIONS[name](b)
            except Exception as exc:  # noqa: BLE001 - keep the other sections
                traceback.print_exc()
                b.notes.append(f"section {name} failed: {type(exc).__name__}: {exc}")
            for srv in servers.values():
                if not srv.alive():
                    b.notes.append(f"{srv.name} died during {name}:\n{srv.tail()}")
            sec_peak = {n: srv.peak_rss() for n, srv in servers.items()}
            for n, v in sec_peak.items():
                peaks[n] = max(peaks[n], v)
            b.info_row(name, "peak RSS in section", "MiB", {n: Measure(v) for n, v in sec_peak.items()})
        _summary(b, peaks)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except s3mod.ServerUnavailable as exc:
        print(f"S3 back end unavailable: {exc}", file=sys.stderr)
    finally:
        for srv in servers.values():
            srv.stop()
        if backend is not None:
            for srv in servers.values():
                if backend.kind == "url" and srv.bucket not in backend.created_buckets:
                    _best_effort(lambda srv=srv: backend.delete_prefix(srv.bucket, srv.s3root.strip("/") + "/"))
            backend.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if b is None:
        return 1
    print()
    print("M/<ref> = Moorage's advantage over a reference: Moorage/ref for rates, ref/Moorage for seconds and MiB.")
    print("cpu = server CPU (user+sys, children included) per GB moved or per request.  "
          "client cpu = load client's CPU / wall (100% = one core).")
    print(table(b.rows))
    print()
    if args.s3:
        print("targets: not judged (they are defined for filesystem storage)")
    else:
        print(targets_table(b.rows))
        found = limits.load()
        if found:
            print()
            print(limits.fractions(b.rows, found, extra.get("http.server", "uvicorn")))
        else:
            print("no machine limits recorded: python -m bench limits measures them")
    for note in b.notes:
        print("note: " + note)
    if args.json:
        meta = {"started": started.isoformat(), "sections": chosen, "settings": dataclasses.asdict(s),
                "s3": {n: {"bucket": srv.bucket, "rootdirectory": srv.s3root} for n, srv in servers.items()}
                if backend is not None else None,
                "commands": {n: srv.cmd for n, srv in servers.items()}, "moorage_set": extra, "notes": b.notes}
        write_json(args.json, meta, b.rows)
        print(f"wrote {args.json}")
    return 0


def _setup_s3(backend: s3mod.S3Backend, servers: dict[str, Server], bucket: str, started: dt.datetime) -> str:
    """Give each registry its own bucket (or, with ``--s3-bucket``, its own rootdirectory) on ``backend``."""
    stamp = started.strftime("%Y%m%d-%H%M%S")
    for name, srv in servers.items():
        srv.s3 = backend
        if backend.kind == "url" and bucket:
            srv.bucket, srv.s3root = bucket, f"/moorage-bench-{stamp}/{name}"
        elif backend.kind == "url":
            srv.bucket, srv.s3root = backend.make_bucket(f"moorage-bench-{stamp}-{name}"), "/bench"
        else:
            srv.bucket, srv.s3root = backend.make_bucket(f"bench-{name}"), "/bench"
        if name == A:
            srv.env_drop = ("AWS_CA_BUNDLE",)  # Distribution 2.8.2 panics at start when it is set
    where = ", ".join(f"{srv.name} s3://{srv.bucket}{srv.s3root}" for srv in servers.values())
    return (f"S3 mode: {backend.describe()}; {where}; storage.redirect.disable: true on both servers, so blob "
            "GETs stream through the registry (pulls check status 200 and the byte count)")


def _best_effort(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - cleanup must go on
        print(f"  cleanup: {type(exc).__name__}: {exc}", file=sys.stderr)


def _summary(b: Bench, peaks: dict[str, float]) -> None:
    for kind in ("push", "pull"):
        vals = {}
        for name in b.servers:
            tot = b.totals.get(f"{kind}:{name}")
            if tot and tot["work"]:
                vals[name] = Measure(tot["cpu"] / (tot["work"] / 1e9), note=f"{tot['work'] / 1e9:.1f} GB")
        if vals:
            b.info_row("summary", f"server CPU per GB {kind}", "s/GB", vals)
    b.info_row("summary", "peak RSS whole run", "MiB", {n: Measure(v) for n, v in peaks.items()})
