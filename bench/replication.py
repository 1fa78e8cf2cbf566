"""Replication against ``skopeo sync``: the same data set copied into a fresh Distribution, interleaved.

``python -m bench replication [--quick] [--repos N] [--tags N] [--rounds N] [--against 2.8.2|v3]``

The data set: ``--repos`` repositories with ``--tags`` tags each; every image has three base layers
shared by all of them, an application layer shared by the tags of its repository, a small layer of
its own and its config (the full set: 200 x 5 images, about 2 GB of unique blobs).  It is written
straight into a storage directory in Distribution's layout; Moorage replicates from that storage
(``moorage replicate run``, a push rule), skopeo syncs from a ``moorage serve`` of the same directory.

Each round, for each tool in turn: a fresh destination registry behind a counting proxy
(``bench/countproxy.py``: the bytes that reached it), the first copy, then a second with nothing
changed.  Measured: wall time, bytes sent against the unique blob bytes, blob uploads and mounts the
destination logged, and the tool's peak RSS (``wait4``).  Medians over the rounds are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from bench import distribution_v3
from bench.countproxy import CountingProxy
from bench.servers import Server, free_port
from storage import paths
from storage.digests import Digest, parse_digest

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCESS_LINE = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass(frozen=True)
class Shape:
    repos: int
    tags: int
    base_mib: tuple[int, ...]  # layers every image shares
    app_mib: float  # one per repository, shared by its tags
    own_kib: int  # one per image

    @property
    def images(self) -> int:
        return self.repos * self.tags


FULL = Shape(200, 5, (48, 32, 16), 9.5, 64)  # ~2.0 GB unique
QUICK = Shape(20, 5, (8, 4, 2), 2.0, 64)  # ~0.06 GB


@dataclass
class DataSet:
    root: Path  # the storage root (Distribution's layout below it)
    images: dict[str, list[str]]  # repository -> tags
    unique_bytes: int  # all distinct blobs (layers and configs)
    blobs: int


class Writer:
    """Writes blobs, links and manifests in Distribution's layout below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sizes: dict[str, int] = {}

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def blob(self, data: bytes) -> Digest:
        digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
        if str(digest) not in self.sizes:
            self.put(paths.blob_data(digest), data)
            self.sizes[str(digest)] = len(data)
        return digest

    def random_blob(self, size: int) -> Digest:
        return self.blob(os.urandom(size))

    def link(self, name: str, digest: Digest) -> None:
        self.put(paths.layer_link(name, digest), str(digest).encode())


def make_data_set(root: Path, shape: Shape) -> DataSet:
    writer = Writer(root)
    base = [(writer.random_blob(int(m * MiB)), int(m * MiB)) for m in shape.base_mib]
    images: dict[str, list[str]] = {}
    for r in range(shape.repos):
        name = f"bench/app{r:03d}"
        app_size = int(shape.app_mib * MiB)
        app = (writer.random_blob(app_size), app_size)
        images[name] = []
        for t in range(shape.tags):
            own_size = shape.own_kib * 1024
            own = (writer.random_blob(own_size), own_size)
            layers = [*base, app, own]
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "rootfs": {"type": "layers", "diff_ids": [str(d) for d, _ in layers]},
                                 "config": {"Labels": {"bench.repo": name, "bench.tag": f"v{t}"}}}).encode()
            config_digest = writer.blob(config)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
                "layers": [{"mediaType": LAYER, "digest": str(d), "size": s} for d, s in layers],
            }).encode()
            manifest_digest = writer.blob(manifest)
            for digest, _ in [*layers, (config_digest, 0)]:
                writer.link(name, digest)
            writer.put(paths.revision_link(name, manifest_digest), str(manifest_digest).encode())
            tag = f"v{t}"
            writer.put(paths.tag_index_link(name, tag, manifest_digest), str(manifest_digest).encode())
            writer.put(paths.tag_current_link(name, tag), str(manifest_digest).encode())
            images[name].append(tag)
            writer.sizes.pop(str(manifest_digest))  # manifests are not blobs to count
    return DataSet(root, images, sum(writer.sizes.values()), len(writer.sizes))


@dataclass
class Run:
    tool: str
    round: int
    first_seconds: float
    first_bytes: int
    first_uploads: int
    first_mounts: int
    second_seconds: float
    second_bytes: int
    second_uploads: int
    peak_rss_mib: float
    exit_codes: list[int] = field(default_factory=list)


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of ``cmd``; its output appended to ``log``."""
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024, proc.returncode


def uploads(log: Path, since: int) -> tuple[int, int, int]:
    """(blob uploads finished, mounts, lines read) in a destination's access log from line ``since`` on."""
    lines = log.read_text(errors="replace").splitlines()
    done = mounted = 0
    for line in lines[since:]:
        found = ACCESS_LINE.search(line)
        if found is None or found.group(3) != "201":
            continue
        method, target = found.group(1), found.group(2)
        if method == "PUT" and "/blobs/uploads/" in target:
            done += 1
        elif method == "POST" and "/blobs/uploads/" in target and "mount=" in target:
            mounted += 1
    return done, mounted, len(lines)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.ports: set[int] = set()
        self.moorage = [sys.executable, "-m", "registry.cli"]

    def destination(self, name: str) -> Server:
        port = free_port(15400, self.ports)
        if self.args.against == "v3":
            binary = str(self.args.v3_binary)
            server = Server(name, [binary, "serve"], self.work / name, port, env_set=dict(distribution_v3.RUN_ENV))
        else:
            server = Server(name, ["docker-registry", "serve"], self.work / name, port)
        server.extra = {"log.level": "info", "log.accesslog.disabled": "false"}
        server.start()
        return server

    def copy_with_moorage(self, data: DataSet, round_: int) -> Run:
        dest = self.destination(f"dest-moorage-{round_}")
        proxy = CountingProxy(dest.port)
        config = self.work / f"moorage-{round_}.yml"
        config.write_text(yaml.safe_dump({
            "storage": {"filesystem": {"rootdirectory": str(data.root)}},
            "log": {"level": "warn"},
            "replication": {"remotes": [{"name": "dest", "url": proxy.url}],
                            "rules": [{"name": "bench", "direction": "push", "remote": "dest",
                                       "repositories": ["bench/**"], "concurrency": self.args.concurrency}]},
        }))
        cmd = [*self.moorage, "replicate", "run", "bench", "-c", str(config)]
        return self.measure("moorage", round_, cmd, dest, proxy, None)

    def copy_with_skopeo(self, data: DataSet, source: Server, round_: int) -> Run:
        dest = self.destination(f"dest-skopeo-{round_}")
        proxy = CountingProxy(dest.port)
        spec = self.work / f"skopeo-{round_}.yml"
        spec.write_text(yaml.safe_dump({f"127.0.0.1:{source.port}": {"tls-verify": False, "images": data.images}}))
        home = self.work / f"skopeo-home-{round_}"  # a blob cache of its own, as a first sync has
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "XDG_DATA_HOME": str(home)}
        cmd = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
               "--preserve-digests", str(spec), proxy.host]
        return self.measure("skopeo", round_, cmd, dest, proxy, env)

    def measure(self, tool: str, round_: int, cmd: list[str], dest: Server, proxy: CountingProxy,
                env: dict[str, str] | None) -> Run:
        log = self.work / f"{tool}-{round_}.log"
        try:
            first, rss1, code1 = timed(cmd, log, env)
            first_bytes = proxy.sent
            up1, mounts1, seen = uploads(dest.log, 0)
            proxy.reset()
            second, rss2, code2 = timed(cmd, log, env)
            up2, _, _ = uploads(dest.log, seen)
            run = Run(tool, round_, first, first_bytes, up1, mounts1, second, proxy.sent, up2, max(rss1, rss2),
                      [code1, code2])
        finally:
            proxy.close()
            dest.stop()
            shutil.rmtree(dest.root, ignore_errors=True)
        print(f"  {tool:8} round {round_}: first {run.first_seconds:6.1f}s {run.first_bytes / MiB:8.1f} MiB sent "
              f"({run.first_uploads} uploads, {run.first_mounts} mounts); second {run.second_seconds:5.2f}s "
              f"{run.second_bytes / 1024:7.1f} KiB, {run.second_uploads} uploads; peak RSS {run.peak_rss_mib:.0f} MiB; "
              f"exit {run.exit_codes}", flush=True)
        return run


def median(runs: list[Run], key: str) -> float:
    return float(statistics.median(getattr(r, key) for r in runs))


def report(data: DataSet, runs: list[Run], against: str) -> str:
    ours = [r for r in runs if r.tool == "moorage"]
    theirs = [r for r in runs if r.tool == "skopeo"]
    unique = data.unique_bytes
    lines = [
        f"Data set: {len(data.images)} repositories x {len(next(iter(data.images.values())))} tags, "
        f"{data.blobs} unique blobs, {unique / 1e9:.2f} GB; destination Distribution {against}; "
        f"medians of {len(ours)} interleaved rounds",
        "",
        "| | Moorage replicate | skopeo sync | goal |",
        "| --- | --- | --- | --- |",
        f"| first run, wall | {median(ours, 'first_seconds'):.1f} s | {median(theirs, 'first_seconds'):.1f} s | "
        f"Moorage >= 2x faster: {median(theirs, 'first_seconds') / median(ours, 'first_seconds'):.2f}x |",
        f"| bytes sent / unique blob bytes | {median(ours, 'first_bytes') / unique:.3f} | "
        f"{median(theirs, 'first_bytes') / unique:.3f} | <= 1.05 |",
        f"| blob uploads / mounts | {median(ours, 'first_uploads'):.0f} / {median(ours, 'first_mounts'):.0f} | "
        f"{median(theirs, 'first_uploads'):.0f} / {median(theirs, 'first_mounts'):.0f} | {data.blobs} unique |",
        f"| second run (nothing changed), wall | {median(ours, 'second_seconds'):.2f} s "
        f"({100 * median(ours, 'second_seconds') / median(ours, 'first_seconds'):.1f} % of the first) | "
        f"{median(theirs, 'second_seconds'):.2f} s "
        f"({100 * median(theirs, 'second_seconds') / median(theirs, 'first_seconds'):.1f} %) | < 5 % |",
        f"| second run, blobs sent | {median(ours, 'second_uploads'):.0f} "
        f"({median(ours, 'second_bytes') / 1024:.0f} KiB of requests) | {median(theirs, 'second_uploads'):.0f} "
        f"({median(theirs, 'second_bytes') / 1024:.0f} KiB) | none |",
        f"| peak RSS | {median(ours, 'peak_rss_mib'):.0f} MiB | {median(theirs, 'peak_rss_mib'):.0f} MiB | < 150 MB |",
    ]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench replication", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20 repositories, about 60 MB")
    p.add_argument("--repos", type=int, help="repositories (default 200, quick 20)")
    p.add_argument("--tags", type=int, help="tags per repository (default 5)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians reported)")
    p.add_argument("--concurrency", type=int, default=8, help="the rule's concurrency (blobs at once)")
    p.add_argument("--against", choices=("2.8.2", "v3"), default="2.8.2", help="the destination registry")
    p.add_argument("--v3-binary", type=Path, default=distribution_v3.default_binary())
    p.add_argument("--workdir", type=Path, help="parent of the temporary data (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the data set and logs")
    p.add_argument("--json", type=Path, help="also write the runs as JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    shape = QUICK if args.quick else FULL
    if args.repos or args.tags:
        shape = Shape(args.repos or shape.repos, args.tags or shape.tags, shape.base_mib, shape.app_mib,
                      shape.own_kib)
    for tool in ("skopeo", "docker-registry") if args.against == "2.8.2" else ("skopeo",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install {'docker-registry' if 'docker' in tool else tool})")
    if args.against == "v3" and not args.v3_binary.is_file():
        raise SystemExit(f"{args.v3_binary}: no Distribution v3 (python -m bench build-v3 SRC)")
    work = Path(tempfile.mkdtemp(prefix="moorage-replication-bench-", dir=args.workdir))
    try:
        started = time.monotonic()
        data = make_data_set(work / "source" / "data", shape)
        print(f"data set: {shape.images} images, {data.blobs} unique blobs, {data.unique_bytes / 1e9:.2f} GB "
              f"(written in {time.monotonic() - started:.0f}s) in {work}", flush=True)
        bench = Bench(args, work)
        source = Server("moorage-source", [*bench.moorage, "serve"], work / "source", free_port(15400, bench.ports))
        source.start()
        runs: list[Run] = []
        try:
            for round_ in range(1, args.rounds + 1):
                order = ("moorage", "skopeo") if round_ % 2 else ("skopeo", "moorage")
                for tool in order:
                    runs.append(bench.copy_with_moorage(data, round_) if tool == "moorage"
                                else bench.copy_with_skopeo(data, source, round_))
        finally:
            source.stop()
        print()
        print(report(data, runs, args.against))
        if args.json:
            args.json.write_text(json.dumps({"shape": asdict(shape), "unique_bytes": data.unique_bytes,
                                             "blobs": data.blobs, "runs": [asdict(r) for r in runs]}, indent=2))
        return 0 if all(code == 0 for r in runs for code in r.exit_codes) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
