"""GC soak: several clients push and delete images through several `moorage serve` replicas while
garbage collection runs in a loop; then every tag must pull with the right digests.

The images share layers from a small pool and each has one layer of its own; as images are deleted
pool layers become unreferenced and are then re-used by later pushes, through "layer already exists"
(HEAD) or a cross-repository mount: the race GC must survive (docs/gc.md). GC runs with a grace
window of two seconds (clients pause up to 1.5 s between their layers and their manifest) and removes
untagged manifests, to make the race as likely as it can be. A push that GC refuses
(``MANIFEST_BLOB_UNKNOWN``: it swept a layer between the client's HEAD and its manifest) is allowed and
retried; a tag that was acknowledged and not deleted but no longer pulls is a loss.

    python -m bench.gc_soak --storage filesystem --seconds 300 --clients 8 --replicas 2
    python -m bench.gc_soak --storage s3 --seconds 300            # on moto, started here
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import procstat
from storage.driver.factory import build_driver
from storage.gc import GarbageCollector
from storage.lease import Lease

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
POOL = 12  # shared layers
REPOSITORIES = 6


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repository: str
    tag: str
    digest: str
    blobs: dict[str, bytes]


@dataclass
class SoakResult:
    storage: str
    seconds: float
    replicas: int
    clients: int
    pushes: int = 0
    refused: int = 0  # manifest PUTs GC refused (a layer it swept meanwhile): retried, not losses
    reused: int = 0  # layers a push did not upload ("already exists" or mounted)
    deletes: int = 0
    gc_runs: int = 0
    gc_blobs_removed: int = 0
    gc_bytes_freed: int = 0
    gc_manifests_removed: int = 0
    tags_checked: int = 0
    blobs_checked: int = 0
    losses: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.storage}: {self.seconds:.0f}s, {self.replicas} replicas, {self.clients} clients: "
                f"{self.pushes} pushes ({self.reused} layers re-used, {self.refused} refused by GC and retried), "
                f"{self.deletes} deletes; {self.gc_runs} GC runs removed {self.gc_manifests_removed} manifests "
                f"and {self.gc_blobs_removed} blobs ({self.gc_bytes_freed} bytes); verified {self.tags_checked} "
                f"tags and {self.blobs_checked} blobs: {len(self.losses)} losses")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, workdir: Path, storage: dict[str, Any], grace: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "config.yml"
        self.config.write_text(yaml.safe_dump({
            "log": {"level": "warning", "accesslog": {"disabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
            "storage": {**storage, "delete": {"enabled": True}, "maintenance": {
                "gc": {"grace": f"{grace}s"}, "uploadpurging": {"enabled": False}}},
        }))
        self.log = workdir / "server.log"
        moorage = Path(sys.executable).with_name("moorage")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(moorage), "serve", str(self.config)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moorage serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v2/", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moorage serve did not answer within 60 s")

    def stop(self) -> None:
        procstat.stop(self.proc, 15)


class Soak:
    def __init__(self, replicas: list[Replica], clients: int, seconds: float, result: SoakResult,
                 grace: float, seed: int = 1) -> None:
        self.grace = grace
        self.replicas = replicas
        self.clients = clients
        self.seconds = seconds
        self.result = result
        self.random = random.Random(seed)
        self.pool = [self.random.randbytes(self.random.randint(20_000, 120_000)) for _ in range(POOL)]
        self.images: dict[tuple[str, str], Image] = {}
        self.stop = asyncio.Event()

    def base(self) -> str:
        return self.random.choice(self.replicas).url

    async def push(self, c: httpx.AsyncClient, image: Image) -> bool:
        """Push like docker: HEAD each blob, else mount from another repository, else upload; then the
        manifest. False when GC refused the manifest (a layer was swept meanwhile)."""
        for digest, data in image.blobs.items():
            head = await c.head(f"{self.base()}/v2/{image.repository}/blobs/{digest}", follow_redirects=True)
            if head.status_code == 200:
                self.result.reused += 1
                continue
            source = f"soak/r{self.random.randrange(REPOSITORIES)}"
            if source != image.repository:
                r = await c.post(f"{self.base()}/v2/{image.repository}/blobs/uploads/?mount={digest}&from={source}")
                if r.status_code == 201:
                    self.result.reused += 1
                    continue
                if r.status_code == 202:  # no such blob there: an upload session was opened instead
                    await c.delete(self.base() + r.headers["Location"] if r.headers["Location"].startswith("/")
                                   else r.headers["Location"])
            r = await c.post(f"{self.base()}/v2/{image.repository}/blobs/uploads/?digest={digest}", content=data)
            if r.status_code != 201:
                raise AssertionError(f"blob upload: {r.status_code} {r.text}")
        # the gap between "layer already exists" and the manifest: now and then a long one
        await asyncio.sleep(self.random.choice([0, 0, 0.05, 0.2, 1.5]))
        content = manifest(image.blobs)
        r = await c.put(f"{self.base()}/v2/{image.repository}/manifests/{image.tag}", content=content,
                        headers={"Content-Type": OCI_MANIFEST})
        if r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN":
            return False
        if r.status_code != 201:
            raise AssertionError(f"manifest PUT: {r.status_code} {r.text}")
        return True

    async def client(self, number: int) -> None:
        mine: list[Image] = []
        count = 0
        async with httpx.AsyncClient(timeout=120) as c:
            while not self.stop.is_set():
                count += 1
                if mine and self.random.random() < 0.35:
                    image = mine.pop(self.random.randrange(len(mine)))
                    # by digest (the manifest goes), or the tag only (GC removes the untagged manifest)
                    reference = image.digest if self.random.random() < 0.5 else image.tag
                    r = await c.delete(f"{self.base()}/v2/{image.repository}/manifests/{reference}")
                    if r.status_code != 202:
                        raise AssertionError(f"delete: {r.status_code} {r.text}")
                    del self.images[(image.repository, image.tag)]
                    self.result.deletes += 1
                    continue
                layers = self.random.sample(self.pool, self.random.randint(1, 3))
                unique = self.random.randbytes(self.random.randint(1000, 30_000))
                config = json.dumps({"client": number, "image": count}).encode()
                blobs = {sha256(b): b for b in (config, *layers, unique)}
                image = Image(f"soak/r{self.random.randrange(REPOSITORIES)}", f"c{number}-{count}", "", blobs)
                while not await self.push(c, image):
                    self.result.refused += 1
                image.digest = sha256(manifest(blobs))
                self.images[(image.repository, image.tag)] = image
                mine.append(image)
                self.result.pushes += 1

    async def collect(self, storage: dict[str, Any]) -> None:
        kind, parameters = next(iter(storage.items()))
        driver = build_driver(kind, dict(parameters))
        try:
            while not self.stop.is_set():
                gc = GarbageCollector(driver, delete_untagged=True, grace=self.grace,
                                      lease=Lease(driver, "gc", settle=0))
                report = await gc.run()
                self.result.gc_runs += 1
                self.result.gc_blobs_removed += report.blobs_removed
                self.result.gc_bytes_freed += report.bytes_freed
                self.result.gc_manifests_removed += report.manifests_removed
                await asyncio.sleep(0.2)
        finally:
            await driver.close()

    async def run(self, storage: dict[str, Any]) -> None:
        started = time.monotonic()
        workers = [asyncio.create_task(self.client(n)) for n in range(self.clients)]
        collector = asyncio.create_task(self.collect(storage))
        try:
            while time.monotonic() - started < self.seconds and not any(t.done() for t in [*workers, collector]):
                await asyncio.sleep(0.2)
        finally:
            self.stop.set()
            await asyncio.gather(*workers, collector)
        self.result.seconds = time.monotonic() - started
        await self.verify()

    async def verify(self) -> None:
        """Every tag acknowledged and not deleted pulls, with the right manifest and blob digests, from
        every replica; no repository lists a tag that should not be there."""
        async with httpx.AsyncClient(timeout=120) as c:
            for replica in self.replicas:
                for (repository, tag), image in sorted(self.images.items()):
                    r = await c.get(f"{replica.url}/v2/{repository}/manifests/{tag}",
                                    headers={"Accept": OCI_MANIFEST})
                    self.result.tags_checked += 1
                    if r.status_code != 200 or sha256(r.content) != image.digest:
                        self.result.losses.append(f"{repository}:{tag}: manifest {r.status_code}")
                        continue
                    for digest in image.blobs:
                        b = await c.get(f"{replica.url}/v2/{repository}/blobs/{digest}", follow_redirects=True)
                        self.result.blobs_checked += 1
                        if b.status_code != 200 or sha256(b.content) != digest:
                            self.result.losses.append(f"{repository}:{tag}: blob {digest} {b.status_code}")
                for n in range(REPOSITORIES):
                    repository = f"soak/r{n}"
                    r = await c.get(f"{replica.url}/v2/{repository}/tags/list")
                    listed = set(r.json().get("tags") or []) if r.status_code == 200 else set()
                    expected = {tag for (repo, tag) in self.images if repo == repository}
                    if listed != expected:
                        self.result.losses.append(f"{repository}: tags {sorted(listed ^ expected)} differ")


def manifest(blobs: dict[str, bytes]) -> bytes:
    (config, config_data), *layers = blobs.items()
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                   "size": len(config_data)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(b)}
                   for d, b in layers],
    }).encode()


def soak(storage: dict[str, Any], workdir: Path, seconds: float, clients: int, replicas: int,
         label: str, grace: float = 2.0) -> SoakResult:
    """Start ``replicas`` servers on ``storage``, soak, verify, stop them."""
    result = SoakResult(label, seconds, replicas, clients)
    started: list[Replica] = []
    try:
        for n in range(replicas):
            started.append(Replica(workdir / f"replica-{n}", storage, grace))
        asyncio.run(Soak(started, clients, seconds, result, grace).run(storage))
    finally:
        for replica in started:
            replica.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--grace", type=float, default=2.0,
                        help="GC grace window, seconds (0: a push that pauses over a second is often refused)")
    parser.add_argument("--s3", default="moto", help="moto (started here), radosgw or an http(s):// endpoint")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moorage-gc-soak-") as scratch:
        workdir = Path(scratch)
        backend = None
        if args.storage == "filesystem":
            storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(workdir / "root"), "fsync": False}}
        else:
            from bench import s3

            backend = s3.start(args.s3, workdir / "s3", range(24500, 24600))
            bucket = backend.make_bucket(f"gc-soak-{os.getpid()}")
            storage = {"s3": backend.storage(bucket, "/registry")}
        try:
            result = soak(storage, workdir, args.seconds, args.clients, args.replicas,
                          f"{args.storage}" + (f" ({backend.describe()})" if backend else ""), args.grace)
        finally:
            if backend is not None:
                backend.stop()
    print(result.summary())
    for loss in result.losses[:50]:
        print("LOST", loss)
    return 1 if result.losses else 0


if __name__ == "__main__":
    sys.exit(main())
