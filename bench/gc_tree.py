"""GC on a large tree, Moorage's ``moorage gc`` next to Distribution 2.8.2's ``garbage-collect``: time and
peak memory on the same tree, written straight to disk in Distribution's layout (run by hand, not in CI).

Every repository holds two images (manifest, config, two layers of their own, one layer from a shared
pool); in ``--deleted`` of the repositories the second image's manifest was deleted, so its blobs
are garbage. Both collectors run on their own copy of the tree (``cp -a``), Moorage online-capable
(``moorage gc``, lease and all), Distribution offline; afterwards both copies must hold the same blobs.

    python -m bench.gc_tree --repositories 10000 --blobs 100000
    python -m bench.gc_tree --s3 moto --repositories 200 --blobs 2000   # S3 requests of one GC run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AGE = 86400.0  # the tree is a day old: older than any grace window


def write(path: Path, data: bytes, stamp: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (stamp, stamp))


def blob(root: Path, data: bytes, stamp: float) -> str:
    hex_ = hashlib.sha256(data).hexdigest()
    write(root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data", data, stamp)
    return hex_


def link(path: Path, hex_: str, stamp: float) -> None:
    write(path, f"sha256:{hex_}".encode(), stamp)


def generate(root: Path, repositories: int, blobs: int, deleted: float, seed: int = 7) -> dict[str, int]:
    """Write the tree; returns what it holds and what is garbage."""
    rng = random.Random(seed)
    stamp = time.time() - AGE
    per_image = 4  # manifest, config, two own layers
    pool_size = max(1, blobs - repositories * 2 * per_image)
    pool = [blob(root, rng.randbytes(64), stamp) for _ in range(pool_size)]
    garbage = 0
    for r in range(repositories):
        repo = root / f"docker/registry/v2/repositories/ns{r % 100}/repo{r}"
        for image in range(2):
            layers = [blob(root, rng.randbytes(64), stamp) for _ in range(2)] + [rng.choice(pool)]
            config = json.dumps({"architecture": "amd64", "os": "linux", "repo": r, "image": image}).encode()
            config_hex = blob(root, config, stamp)
            for hex_ in [config_hex, *layers]:
                link(repo / f"_layers/sha256/{hex_}/link", hex_, stamp)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": f"sha256:{config_hex}", "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": f"sha256:{h}", "size": 64} for h in layers],
            }).encode()
            manifest_hex = blob(root, manifest, stamp)
            if image == 1 and rng.random() < deleted:
                garbage += 4  # manifest deleted through the API: revision link and tag gone
                continue
            link(repo / f"_manifests/revisions/sha256/{manifest_hex}/link", manifest_hex, stamp)
            tag = repo / f"_manifests/tags/v{image}"
            link(tag / "current/link", manifest_hex, stamp)
            link(tag / f"index/sha256/{manifest_hex}/link", manifest_hex, stamp)
    return {"repositories": repositories, "blobs": pool_size + repositories * 2 * per_image, "garbage": garbage}


def measure(command: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of ``command`` under GNU time."""
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.run(["/usr/bin/time", "-v", *command], stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{text[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) // 1024  # type: ignore[union-attr]
    return seconds, rss


def blob_count(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "docker/registry/v2/blobs").rglob("data")}


def s3_requests(spec: str, source: Path, work: Path, shape: dict[str, int]) -> int:
    """Upload the tree into a bucket (its modification times become now: GC runs with no grace window
    once they are a few seconds old) and count the requests of one GC run by operation."""
    import asyncio

    from bench import s3
    from storage.driver.s3 import S3Driver
    from storage.gc import GarbageCollector
    from storage.lease import Lease

    backend = s3.start(spec, work / "s3", range(24600, 24700))
    try:
        bucket = backend.make_bucket(f"gc-tree-{os.getpid()}")
        client = backend.client()
        files = [p for p in source.rglob("*") if p.is_file()]
        for path in files:
            client.put_object(Bucket=bucket, Key=f"registry/{path.relative_to(source)}", Body=path.read_bytes())
        time.sleep(2.5)

        async def collect() -> tuple[str, dict[str, int]]:
            driver = S3Driver.from_parameters(backend.storage(bucket, "/registry"))
            try:
                driver.request_counts(reset=True)
                result = await GarbageCollector(driver, grace=0, lease=Lease(driver, "gc")).run()
                return result.summary(), driver.request_counts()
            finally:
                await driver.close()

        summary, counts = asyncio.run(collect())
    finally:
        backend.stop()
    print(f"{len(files)} objects in the bucket; moorage gc: {summary}")
    print(f"S3 requests of one GC run: {sum(counts.values())} "
          f"({', '.join(f'{op} {n}' for op, n in sorted(counts.items()))})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_tree", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--deleted", type=float, default=0.3, help="share of repositories with a deleted image")
    parser.add_argument("--workdir", type=Path, help="keep the trees here (default: a temporary directory)")
    parser.add_argument("--distribution", default=shutil.which("docker-registry") or "docker-registry")
    parser.add_argument("--s3", help="count the S3 requests of one moorage GC run on this backend (moto, radosgw, "
                                      "an http(s):// endpoint) instead of timing both collectors")
    args = parser.parse_args(argv)
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="moorage-gc-tree-")
        args.workdir = Path(scratch.name)
    work: Path = args.workdir
    try:
        source = work / "tree"
        t0 = time.monotonic()
        shape = generate(source, args.repositories, args.blobs, args.deleted)
        print(f"tree: {shape['repositories']} repositories, {shape['blobs']} blobs ({shape['garbage']} garbage) "
              f"written in {time.monotonic() - t0:.0f}s", flush=True)
        if args.s3:
            return s3_requests(args.s3, source, work, shape)
        results = {}
        for name in ("moorage", "distribution"):
            root = work / name
            subprocess.run(["cp", "-a", str(source), str(root)], check=True)
            config = work / f"{name}.yml"
            storage = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}
            config.write_text(yaml.safe_dump({"version": 0.1, "storage": storage,
                                              "http": {"addr": "127.0.0.1:24999"}}))
            if name == "moorage":
                command = [str(Path(sys.executable).with_name("moorage")), "gc", str(config)]
            else:
                command = [args.distribution, "garbage-collect", str(config)]
            os.system("sync")
            seconds, rss = measure(command, work / f"{name}.log")
            results[name] = (seconds, rss, len(blob_count(root)))
            print(f"{name}: {seconds:.1f}s, peak RSS {rss} MiB, {results[name][2]} blobs left", flush=True)
        moorage_left, distribution_left = blob_count(work / "moorage"), blob_count(work / "distribution")
        same = "yes" if moorage_left == distribution_left else f"NO ({len(moorage_left ^ distribution_left)} differ)"
        print(f"\n| {args.repositories} repositories, {shape['blobs']} blobs | time | peak RSS | blobs removed |")
        print("|---|---:|---:|---:|")
        for name, label in (("moorage", "Moorage `moorage gc` (online)"),
                            ("distribution", "Distribution 2.8.2 `garbage-collect` (offline)")):
            seconds, rss, left = results[name]
            print(f"| {label} | {seconds:.1f} s | {rss} MiB | {shape['blobs'] - left} |")
        print(f"\nsame blobs left in both trees: {same}")
        log = (work / "moorage.log").read_text().splitlines()
        print("moorage gc:", next(line for line in log if "repositories;" in line))
        return 0 if same == "yes" else 1
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    sys.exit(main())
