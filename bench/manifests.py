"""Manifest sections (PUT / GET by tag / HEAD by digest) and ``GET /v2/``; plus the client ceiling."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.core import Bench
from bench.loadgen import LoadResult, MakeRequest, raw_request, run_load
from bench.report import Measure
from bench.servers import HOST, Server
from bench.wire import Conn, target_of, with_query
from bench.wrkdrv import run_wrk

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def put_blob(conn: Conn, repo: str, data: bytes) -> dict[str, object]:
    """Push a small blob (POST + PUT) and return its descriptor fields."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = conn.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    conn.request("PUT", with_query(target_of(r.headers["location"]), digest=digest),
                 {"Content-Type": "application/octet-stream"}, [data], len(data), expect=(201,))
    return {"digest": digest, "size": len(data)}


@dataclass
class Image:
    """Blobs pushed into one repository and a manifest body template with a per-request number."""

    repo: str
    config: dict[str, object]
    layer: dict[str, object]

    def manifest(self, n: int | str) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.layer}],
            "annotations": {"org.example.bench": str(n)},
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def make_image(srv: Server, repo: str) -> Image:
    conn = Conn(HOST, srv.port)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    img = Image(repo, put_blob(conn, repo, cfg), put_blob(conn, repo, os.urandom(2048)))
    conn.close()
    return img


def put_requests(srv: Server, img: Image, repo: str, tag: Callable[[int], str],
                 body: Callable[[int], bytes]) -> MakeRequest:
    host = f"{HOST}:{srv.port}"
    hdrs = {"Content-Type": OCI_MANIFEST}

    def make(i: int) -> tuple[bytes, bool]:
        return raw_request("PUT", f"/v2/{repo}/manifests/{tag(i)}", host, hdrs, body(i)), False

    return make


def cycle(reqs: list[bytes], head: bool) -> MakeRequest:
    n = len(reqs)
    return lambda i: (reqs[i % n], head)


def load_measure(res: LoadResult) -> Measure:
    bad = {k: v for k, v in res.statuses.items() if k >= 300}
    note = f"statuses {dict(bad)}" if bad else ""
    return Measure(res.rate, work=float(res.done), p50=res.pct(0.50), p99=res.pct(0.99), errors=res.errors,
                   note=note, wall=res.wall)


def section_manifest(b: Bench) -> None:
    s = b.settings
    imgs: dict[str, Image] = {}
    tag_reqs: dict[str, list[bytes]] = {}
    head_reqs: dict[str, list[bytes]] = {}
    for name, srv in b.servers.items():
        img = imgs[name] = make_image(srv, "bench/manifest")
        host = f"{HOST}:{srv.port}"
        res = run_load(HOST, srv.port, 8, put_requests(srv, img, img.repo, lambda i: f"g{i:03d}", img.manifest),
                       total=100, expect=(201,))
        if res.errors:
            raise RuntimeError(f"{name}: manifest PUT failed: {dict(res.statuses)}")
        digests = ["sha256:" + hashlib.sha256(img.manifest(i)).hexdigest() for i in range(100)]
        conn = Conn(HOST, srv.port)
        r = conn.request("GET", f"/v2/{img.repo}/manifests/g007", {"Accept": ACCEPT}, expect=(200,))
        if r.headers.get("docker-content-digest") != digests[7] or r.body != img.manifest(7):
            raise RuntimeError(f"{name}: GET manifest by tag returned a different manifest/digest")
        conn.close()
        tag_reqs[name] = [raw_request("GET", f"/v2/{img.repo}/manifests/g{i:03d}", host, {"Accept": ACCEPT})
                          for i in range(100)]
        head_reqs[name] = [raw_request("HEAD", f"/v2/{img.repo}/manifests/{d}", host, {"Accept": ACCEPT})
                           for d in digests]

    for conc in s.manifest_conc:
        _put_case(b, imgs, conc)
    for conc in s.manifest_conc:
        b.case("manifest", f"GET tag c{conc}", "req/s",
               lambda srv, c=conc: load_measure(run_load(HOST, srv.port, c, cycle(tag_reqs[srv.name], False),
                                                         seconds=s.seconds, expect=(200,))),
               cpu_unit="us/req")
    if s.wrk:
        for conc in s.manifest_conc[1:]:
            b.case("manifest", f"GET tag c{conc} (wrk)", "req/s",
                   lambda srv, c=conc: run_wrk(s.wrk or "", f"http://{HOST}:{srv.port}/v2/bench/manifest/"
                                               "manifests/g001", c, s.seconds, s.wrk_threads, {"Accept": ACCEPT}),
                   cpu_unit="us/req")
    for conc in s.manifest_conc:
        b.case("manifest", f"HEAD digest c{conc}", "req/s",
               lambda srv, c=conc: load_measure(run_load(HOST, srv.port, c, cycle(head_reqs[srv.name], True),
                                                         seconds=s.seconds, expect=(200,))),
               cpu_unit="us/req")


def _put_case(b: Bench, imgs: dict[str, Image], conc: int) -> None:
    def fn(srv: Server) -> Measure:
        img = imgs[srv.name]
        stamp = f"p{conc}-{time.monotonic_ns()}"
        make = put_requests(srv, img, img.repo, lambda i: f"{stamp}-{i}", lambda i: img.manifest(f"{stamp}-{i}"))
        return load_measure(run_load(HOST, srv.port, conc, make, seconds=b.settings.seconds, expect=(201,)))

    b.case("manifest", f"PUT c{conc}", "req/s", fn, cpu_unit="us/req")


def section_v2(b: Bench) -> None:
    s = b.settings
    c = s.v2_conc

    def fn(srv: Server) -> Measure:
        req = raw_request("GET", "/v2/", f"{HOST}:{srv.port}")
        return load_measure(run_load(HOST, srv.port, c, lambda i: (req, False), seconds=s.seconds, expect=(200,)))

    b.case("v2", f"GET /v2/ c{c}", "req/s", fn, cpu_unit="us/req")
    if s.wrk:
        b.case("v2", f"GET /v2/ c{c} (wrk)", "req/s",
               lambda srv: run_wrk(s.wrk or "", f"http://{HOST}:{srv.port}/v2/", c, s.seconds, s.wrk_threads),
               cpu_unit="us/req")


def client_ceiling(b: Bench, port: int) -> None:
    """Rate of the Python load client (and wrk) against a trivial server on this machine."""
    s = b.settings
    proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        req = raw_request("GET", "/v2/", f"{HOST}:{port}")
        t0 = time.process_time()
        res = run_load(HOST, port, s.v2_conc, lambda i: (req, False), seconds=s.seconds)
        cpu = time.process_time() - t0
        line = (f"client ceiling: python loadgen {res.rate:,.0f} req/s at c{s.v2_conc} against a trivial server "
                f"({cpu / res.wall:.0%} of a core, {cpu * 1e6 / max(1, res.done):.0f} us/req)")
        if s.wrk:
            w = run_wrk(s.wrk, f"http://{HOST}:{port}/v2/", s.v2_conc, s.seconds, s.wrk_threads)
            line += f"; wrk -t{s.wrk_threads} {w.value:,.0f} req/s"
        else:
            line += "; wrk not installed (apt-get install wrk for a C client cross-check)"
        b.notes.append(line)
        print("  " + line, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
