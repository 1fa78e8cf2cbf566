"""Tag list and catalog sections: populate through the API, then time full walks paged by 100."""

from __future__ import annotations

import json
import re
import time

from bench.core import Bench
from bench.loadgen import raw_request, run_load
from bench.manifests import OCI_MANIFEST, Image, make_image
from bench.report import Measure
from bench.servers import HOST, Server
from bench.wire import Conn, target_of

PAGE = 100
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
CAT_PREFIX = "bench-cat/r"


def walk(srv: Server, first: str, key: str) -> tuple[list[str], int]:
    """Follow ``Link: rel=next`` from ``first``; return all entries and the number of pages."""
    conn = Conn(HOST, srv.port)
    out: list[str] = []
    target: str | None = first
    pages = 0
    while target and pages < 100_000:
        r = conn.request("GET", target, expect=(200,))
        pages += 1
        items = json.loads(r.body).get(key) or []
        out += items
        m = _NEXT.search(r.headers.get("link", ""))
        target = target_of(m.group(1)) if m and items else None
    conn.close()
    return out, pages


def _walk_measure(b: Bench, srv: Server, first: str, key: str, expect: int, prefix: str) -> Measure:
    times: list[float] = []
    t_end = time.perf_counter() + b.settings.seconds
    while True:
        t0 = time.perf_counter()
        items, pages = walk(srv, first, key)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() >= t_end or len(times) >= 50:
            break
    mine = [x for x in items if x.startswith(prefix)]
    errors = 0
    note = f"{pages} pages, {len(times)} walks"
    if len(mine) != expect or len(set(items)) != len(items):
        errors = 1
        note += f"; got {len(mine)}/{expect} entries, {len(items) - len(set(items))} duplicates"
    if items != sorted(items):
        note += "; not in lexical order"
    times.sort()
    return Measure(times[len(times) // 2], work=float(pages * len(times)), errors=errors, note=note,
                   wall=sum(times))


def populate_tags(srv: Server, img: Image, n: int, conc: int) -> Measure:
    host = f"{HOST}:{srv.port}"
    body = img.manifest("tags")
    hdrs = {"Content-Type": OCI_MANIFEST}
    res = run_load(HOST, srv.port, conc,
                   lambda i: (raw_request("PUT", f"/v2/{img.repo}/manifests/t{i:05d}", host, hdrs, body), False),
                   total=n, expect=(201,))
    return Measure(res.wall, work=float(res.done), errors=res.errors, note=f"{n} PUTs c{conc}", wall=res.wall)


def populate_repos(srv: Server, img: Image, lo: int, hi: int, conc: int) -> Measure:
    """Per repository: mount the config and layer blobs from ``img.repo``, then PUT a manifest."""
    host = f"{HOST}:{srv.port}"
    blobs = [img.config["digest"], img.layer["digest"]]
    body = img.manifest("catalog")
    hdrs = {"Content-Type": OCI_MANIFEST}
    t0 = time.perf_counter()
    mount = run_load(
        HOST, srv.port, conc,
        lambda i: (raw_request("POST", f"/v2/{CAT_PREFIX}{lo + i // 2:05d}/blobs/uploads/?mount={blobs[i % 2]}"
                               f"&from={img.repo}", host), False),
        total=2 * (hi - lo), expect=(201,))
    put = run_load(
        HOST, srv.port, conc,
        lambda i: (raw_request("PUT", f"/v2/{CAT_PREFIX}{lo + i:05d}/manifests/latest", host, hdrs, body), False),
        total=hi - lo, expect=(201,))
    wall = time.perf_counter() - t0
    errors = mount.errors + put.errors
    note = f"{hi - lo} repos: {mount.done} mounts + {put.done} PUTs c{conc}"
    if errors:
        note += f"; statuses mount={dict(mount.statuses)} put={dict(put.statuses)}"
    return Measure(wall, work=float(mount.done + put.done), errors=errors, note=note, wall=wall)


def section_tags(b: Bench) -> None:
    n = b.settings.tags
    imgs = {name: make_image(srv, "bench/tags") for name, srv in b.servers.items()}
    b.info_row("tags", f"populate {n} tags", "s",
               {name: populate_tags(srv, imgs[name], n, b.settings.populate_conc)
                for name, srv in b.servers.items()})
    b.case("tags", f"walk {n} tags n={PAGE}", "s",
           lambda srv: _walk_measure(b, srv, f"/v2/bench/tags/tags/list?n={PAGE}", "tags", n, "t"),
           higher_better=False, reps=1)
    b.case("tags", f"list {n} tags unpaged", "s",
           lambda srv: _walk_measure(b, srv, "/v2/bench/tags/tags/list", "tags", n, "t"),
           higher_better=False, reps=1)


def section_catalog(b: Bench) -> None:
    s = b.settings
    imgs = {name: make_image(srv, "bench/catbase") for name, srv in b.servers.items()}
    done = 0
    for total in [s.repos, s.repos_big]:
        if total <= done:
            continue
        b.info_row("catalog", f"populate repos {done}..{total}", "s",
                   {name: populate_repos(srv, imgs[name], done, total, s.populate_conc)
                    for name, srv in b.servers.items()})
        done = total
        b.case("catalog", f"walk {total} repos n={PAGE}", "s",
               lambda srv, t=total: _walk_measure(b, srv, f"/v2/_catalog?n={PAGE}", "repositories", t,
                                                  CAT_PREFIX),
               higher_better=False, reps=1)
