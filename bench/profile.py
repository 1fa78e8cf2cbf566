"""``python -m bench profile CASE``: where a Moorage hot path spends its CPU, sampled with py-spy.

Starts ``moorage serve`` (uvicorn or granian, ``--set http.server=granian``), drives one case for
``--seconds`` while ``py-spy record`` samples the server (``--native`` adds C frames: hashing, parsing), and
prints the functions that hold the most samples, by self time and inclusive, plus the share of each layer
(ASGI server, framework, registry, storage, auth, asyncio, threads).  Samples are relative cost, which a busy
shared machine distorts far less than timings; the raw stacks stay in ``--out`` for a flame graph.

Cases: ``push`` (monolithic 512 MiB PUTs, c1), ``pull`` (512 MiB GETs, c1), ``get-tag`` (manifest GET by tag,
c16), ``put`` (manifest PUT, c16), ``v2`` (``GET /v2/``, c64).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.blobs import push
from bench.loadgen import raw_request, run_load
from bench.manifests import ACCEPT, make_image, put_requests
from bench.payload import Payloads
from bench.report import B
from bench.run import moorage_cmd
from bench.servers import HOST, Server
from bench.wire import Conn

MIB = 1 << 20
LAYERS = (  # first match wins: file name fragments -> layer
    ("uvicorn", "ASGI server"), ("httptools", "ASGI server"), ("granian", "ASGI server"), ("h11", "ASGI server"),
    ("starlette", "framework"), ("registry/", "registry"), ("storage/", "storage"), ("auth/", "auth"),
    ("asyncio", "asyncio"), ("concurrent/futures", "threads"), ("threading", "threads"),
)


def drive(case: str, srv: Server, seconds: float, stop: threading.Event) -> str:
    """Run ``case`` against ``srv`` until ``seconds`` pass; returns what was done."""
    if case in ("push", "pull"):
        size = 512 * MIB
        payloads = Payloads([size], "prof")
        conn = Conn(HOST, srv.port)
        done = 0
        deadline = time.perf_counter() + seconds
        digest = ""
        if case == "pull":
            tail, digest = payloads.new(size)
            push(conn, "prof/blob", payloads, size, tail, digest)
        while time.perf_counter() < deadline and not stop.is_set():
            if case == "push":
                tail, pushed = payloads.new(size)
                push(conn, "prof/blob", payloads, size, tail, pushed)
                srv.drop_blob(pushed)
            else:
                conn.request("GET", f"/v2/prof/blob/blobs/{digest}", discard=True, expect=(200,))
            done += 1
        conn.close()
        return f"{done} x 512 MiB {case}es"
    host = f"{HOST}:{srv.port}"
    if case == "v2":
        req = raw_request("GET", "/v2/", host)
        res = run_load(HOST, srv.port, 64, lambda i: (req, False), seconds=seconds, expect=(200,))
        return f"{res.done} GET /v2/ c64 ({res.rate:,.0f} req/s, {res.errors} errors)"
    img = make_image(srv, "prof/manifest")
    if case == "put":
        stamp = time.monotonic_ns()
        make = put_requests(srv, img, img.repo, lambda i: f"p{stamp}-{i}", lambda i: img.manifest(f"{stamp}-{i}"))
        res = run_load(HOST, srv.port, 16, make, seconds=seconds, expect=(201,))
        return f"{res.done} manifest PUTs c16 ({res.rate:,.0f} req/s, {res.errors} errors)"
    make = put_requests(srv, img, img.repo, lambda i: f"g{i:03d}", img.manifest)
    run_load(HOST, srv.port, 8, make, total=100, expect=(201,))
    reqs = [raw_request("GET", f"/v2/{img.repo}/manifests/g{i:03d}", host, {"Accept": ACCEPT}) for i in range(100)]
    res = run_load(HOST, srv.port, 16, lambda i: (reqs[i % 100], False), seconds=seconds, expect=(200,))
    return f"{res.done} manifest GETs by tag c16 ({res.rate:,.0f} req/s, {res.errors} errors)"


def summarize(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function, and per layer, from py-spy's raw (collapsed) output."""
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_count[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
        layers[layer_of(frames)] += count
    if not total:
        return "no samples (was the server busy?)"
    out = [f"{total} samples"]
    out.append("by layer (innermost frame that belongs to one):")
    out += [f"  {n / total:6.1%}  {name}" for name, n in layers.most_common()]
    out.append(f"top {top} by self samples:")
    out += [f"  {n / total:6.1%}  {frame}" for frame, n in self_count.most_common(top)]
    out.append(f"top {top} by inclusive samples:")
    out += [f"  {n / total:6.1%}  {frame}" for frame, n in incl.most_common(top)]
    return "\n".join(out)


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for fragment, name in LAYERS:
            if fragment in frame:
                return name
    return "other (C / interpreter)"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=["push", "pull", "get-tag", "put", "v2"])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--gil", action="store_true", help="only samples that hold the GIL (Python CPU; without it, "
                   "threads blocked in fsync or hashing count too)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Moorage config key")
    p.add_argument("--moorage-cmd", default="")
    p.add_argument("--port", type=int, default=15470)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, help="keep py-spy's raw stacks here")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    work = Path(tempfile.mkdtemp(prefix="moorage-profile-"))
    srv = Server(B, moorage_cmd(args.moorage_cmd), work / "moorage", args.port,
                 dict(kv.split("=", 1) for kv in args.set))
    raw = args.out or work / "stacks.txt"
    try:
        srv.start()
        stop = threading.Event()
        result: list[str] = []

        def runner() -> None:
            result.append(drive(args.case, srv, args.seconds + 1.5, stop))

        load = threading.Thread(target=runner, daemon=True)
        cpu0 = srv.cpu()
        load.start()
        time.sleep(0.5)  # past set-up and connection start
        cmd = [spy, "record", "--pid", str(srv.pid), "--subprocesses", "--duration", str(int(args.seconds)),
               "--rate", str(args.rate), "--format", "raw", "--output", str(raw)]
        # without pausing the server when sampling Python frames only; C frames need it paused
        cmd.append("--native" if args.native else "--nonblocking")
        if args.gil:
            cmd.append("--gil")
        spied = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if spied.returncode != 0:
            raise SystemExit(f"py-spy failed: {spied.stderr.strip()[-500:]}")
        load.join(args.seconds + 120)
        stop.set()
        cpu = srv.cpu() - cpu0
        print(f"{args.case} on moorage ({' '.join(args.set) or 'defaults'}): {result[0] if result else 'unfinished'}; "
              f"server CPU {cpu:.1f} s")
        print(summarize(raw, args.top))
        if args.out:
            print(f"raw stacks in {raw} (flamegraph.pl or speedscope read them)")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
