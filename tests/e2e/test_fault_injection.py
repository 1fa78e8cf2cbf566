"""Fault injection (issue 14): kill -9 at random points of pushes and manifest storms, on the filesystem
and on S3 (moto), then restart and verify every acknowledged blob and tag by digest, and that no listed
tag fails to resolve; S3 endpoint faults (refused, hanging, slow, 500, 503) through a proxy the test
controls, with the default config (a hung endpoint's 503 within 10 s, issue 24 item 4), and a read-only
filesystem.  Each scenario records what the client saw in FAULT_MATRIX, which
is printed at the end (and written to $MOORAGE_FAULT_MATRIX when set) for the closing note.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.s3 import S3Backend
from tests.faultproxy import FaultProxy

from .helpers import mounted_tmpfs
from .moto import moto_or_skip
from .servers import RegistryProcess

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ROUNDS = int(os.environ.get("MOORAGE_FAULT_ROUNDS", "1"))  # more by hand
STORM_WRITERS = 8
FAULT_MATRIX: list[dict[str, str]] = []
DEFAULT_BOUND = 10.0  # with the default config: a request's 503 within this, whatever the endpoint does


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def record(fault: str, storage: str, client_saw: str, verified: str) -> None:
    FAULT_MATRIX.append({"fault": fault, "storage": storage, "client saw": client_saw, "data verified": verified})


@pytest.fixture(scope="module", autouse=True)
def matrix_report() -> Iterator[None]:
    yield
    if not FAULT_MATRIX:
        return
    lines = ["| fault | storage | client saw | data verified |", "|---|---|---|---|"]
    lines += [f"| {r['fault']} | {r['storage']} | {r['client saw']} | {r['data verified']} |" for r in FAULT_MATRIX]
    text = "\n".join(lines)
    print("\n\nFAULT MATRIX\n" + text)
    if os.environ.get("MOORAGE_FAULT_MATRIX"):
        Path(os.environ["MOORAGE_FAULT_MATRIX"]).write_text(text + "\n")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    yield from moto_or_skip(tmp_path_factory.mktemp("moto"), "S3 fault injection")


def start_on(start_moorage, kind: str, moto: S3Backend | None, endpoint: str | None = None) -> RegistryProcess:  # type: ignore[no-untyped-def]
    """A started `moorage serve` on the filesystem, or on a fresh bucket of ``moto`` (through ``endpoint``)."""
    if kind == "filesystem":
        return start_moorage()
    assert moto is not None
    server = start_moorage(start=False)
    storage = server.config["storage"]
    storage.pop("filesystem", None)
    storage["s3"] = moto.parameters(moto.make_bucket(), rootdirectory="/registry")  # the default timeouts
    if endpoint:
        storage["s3"]["regionendpoint"] = endpoint
    storage["redirect"] = {"disable": True}
    return server.start()


def kill_9(server: RegistryProcess) -> None:
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    server.proc = None


def push_blob(http: httpx.Client, name: str, data: bytes, chunked: bool) -> str:
    digest = digest_of(data)
    if not chunked:
        r = http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
        r.raise_for_status()
        return digest
    location = http.post(f"/v2/{name}/blobs/uploads/").headers["location"]
    half = len(data) // 2
    r = http.patch(location, content=data[:half], headers={"Content-Range": f"0-{half - 1}"})
    r.raise_for_status()
    r = http.put(r.headers["location"], params={"digest": digest}, content=data[half:])
    r.raise_for_status()
    return digest


def manifest(config: str, layers: list[tuple[str, int]], config_size: int, note: str) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                   for d, s in layers],
        "annotations": {"note": note},
    }).encode()


def verify(server: RegistryProcess, blobs: dict[str, str], tags: dict[tuple[str, str], str]) -> str:
    """Every acknowledged blob and tag is there, by digest; every listed tag resolves."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for digest, name in blobs.items():
            r = http.get(f"/v2/{name}/blobs/{digest}")
            assert r.status_code == 200 and digest_of(r.content) == digest, (digest, r.status_code)
        for (name, tag), digest in tags.items():
            r = http.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200, (name, tag, r.status_code)
            assert digest_of(r.content) == digest == r.headers["docker-content-digest"], (name, tag)
        listed = 0
        for name in {name for name, _ in tags} | {"storm/app"}:
            r = http.get(f"/v2/{name}/tags/list")
            if r.status_code == 404:
                continue
            for tag in r.json()["tags"] or []:
                listed += 1
                got = http.head(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert got.status_code == 200, f"{name}:{tag} is listed but answers {got.status_code}"
    return f"{len(blobs)} blobs, {len(tags)} acked tags by digest; {listed} listed tags resolve"


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_kill_9_during_pushes_and_manifest_storm(kind: str, start_moorage, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    moto = request.getfixturevalue("moto") if kind == "s3" else None
    server = start_on(start_moorage, kind, moto)
    rng = random.Random(14)
    blobs: dict[str, str] = {}
    tags: dict[tuple[str, str], str] = {}
    lock = threading.Lock()
    config = b'{"architecture":"amd64","os":"linux"}'
    with httpx.Client(base_url=server.url, timeout=30) as http:
        config_digest = push_blob(http, "storm/app", config, chunked=False)
    blobs[config_digest] = "storm/app"
    outcomes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        stop = threading.Event()

        def writer(worker: int, round_: int = round_, stop: threading.Event = stop) -> None:
            i = 0
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not stop.is_set():
                    i += 1
                    try:
                        layer = os.urandom(rng.choice([100, 70_000, 600_000]))
                        layer_digest = push_blob(http, "storm/app", layer, chunked=i % 2 == 0)
                        with lock:
                            blobs[layer_digest] = "storm/app"
                        body = manifest(config_digest, [(layer_digest, len(layer))], len(config),
                                        f"{round_}-{worker}-{i}")
                        tag = f"r{round_}-w{worker}-{i}"
                        r = http.put(f"/v2/storm/app/manifests/{tag}", content=body,
                                     headers={"Content-Type": OCI_MANIFEST})
                        if r.status_code == 201:
                            with lock:
                                tags[("storm/app", tag)] = digest_of(body)
                        outcomes[str(r.status_code)] += 1
                    except (httpx.HTTPError, OSError):
                        outcomes["connection error"] += 1
                        if stop.is_set() or server.proc is None:
                            return
                        time.sleep(0.05)

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(STORM_WRITERS)]
        for t in threads:
            t.start()
        acked = len(tags)
        deadline = time.monotonic() + 120
        while len(tags) < acked + 2 * STORM_WRITERS and time.monotonic() < deadline:
            time.sleep(0.05)  # the storm is under way (moto is slow to start with)...
        time.sleep(rng.uniform(0, 1.5))  # ...then a random point of it
        kill_9(server)
        stop.set()
        for t in threads:
            t.join(30)
        server.start()
        verified = verify(server, blobs, tags)
    if kind == "filesystem":
        leftovers = list((server.root / "docker").rglob(".moorage-tmp-*"))
        assert leftovers == [], leftovers
    saw = ", ".join(f"{n}x {k}" for k, n in sorted(outcomes.items()))
    record(f"kill -9 during {STORM_WRITERS} concurrent pushes + manifest PUTs ({ROUNDS} rounds)", kind, saw, verified)


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_kill_9_during_docker_push(kind: str, start_moorage, docker, images, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    moto = request.getfixturevalue("moto") if kind == "s3" else None
    server = start_on(start_moorage, kind, moto)
    rng = random.Random(f"docker-{kind}")
    outcomes = []
    for round_ in range(ROUNDS):
        image = images.docker_archive(f"kill/docker:{round_}", layers=[images.random_layer(6 << 20) for _ in range(3)])
        ref = server.ref("kill/docker", f"r{round_}")
        docker.tag(docker.load(image.path), ref)
        pushing = threading.Thread(target=lambda ref=ref: outcomes.append(
            docker("push", ref, check=False, timeout=300).returncode), daemon=True)
        pushing.start()
        time.sleep(rng.uniform(0.3, 2.0))  # a random point of the push
        kill_9(server)
        server.start()  # the client's retries may meet the restarted registry
        pushing.join(300)
        digest, _ = docker.push(ref)  # and a push afterwards completes
        with httpx.Client(base_url=server.url, timeout=60) as http:
            r = http.get(f"/v2/kill/docker/manifests/r{round_}",
                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
            assert r.status_code == 200 and digest_of(r.content) == digest
            blobs = {d["digest"]: "kill/docker" for d in [json.loads(r.content)["config"],
                                                          *json.loads(r.content)["layers"]]}
        verified = verify(server, blobs, {("kill/docker", f"r{round_}"): digest})
    saw = f"interrupted push exit codes {outcomes}; the push after the restart succeeded"
    record(f"kill -9 at a random point of docker push ({ROUNDS} rounds)", kind, saw, verified)


def test_s3_endpoint_faults(start_moorage, moto: S3Backend) -> None:  # type: ignore[no-untyped-def]
    proxy = FaultProxy(moto.endpoint, delay=0.3)
    try:
        server = start_on(start_moorage, "s3", moto, endpoint=proxy.endpoint)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            data = os.urandom(300_000)
            digest = push_blob(http, "faults/app", data, chunked=True)
            for mode in ("refuse", "hang", "slow", "500", "503"):
                proxy.set(mode)
                seen: Counter[str] = Counter()
                slowest = 0.0
                for path in ("/v2/faults/app/tags/list", f"/v2/faults/app/blobs/{digest}", "/v2/_catalog",
                             "/v2/faults/app/blobs/uploads/", "/v2/faults/app/tags/list"):
                    started = time.monotonic()
                    r = http.post(path) if path.endswith("/uploads/") else http.get(path)
                    slowest = max(slowest, time.monotonic() - started)
                    if r.status_code >= 400:
                        body = r.json()["errors"][0]
                        seen[f"{r.status_code} {body['code']}" + (" +Retry-After" if "retry-after" in r.headers else "")] += 1
                        assert r.status_code < 500 or (r.status_code == 503 and body["code"] == "UNAVAILABLE"
                                                       and int(r.headers["retry-after"]) >= 1), r.text
                    else:
                        seen[str(r.status_code)] += 1
                assert slowest < DEFAULT_BOUND, f"{mode}: a request took {slowest:.1f}s"
                proxy.set("pass")
                deadline = time.monotonic() + 30
                while http.get(f"/v2/faults/app/blobs/{digest}").status_code != 200:  # recovers by itself
                    assert time.monotonic() < deadline, f"no recovery after {mode}"
                    time.sleep(0.5)
                got = http.get(f"/v2/faults/app/blobs/{digest}")
                assert digest_of(got.content) == digest
                saw = ", ".join(f"{n}x {k}" for k, n in sorted(seen.items())) + f"; slowest {slowest:.1f}s"
                record(f"S3 endpoint {mode}", "s3 (moto)", saw, "blob by digest after recovery")
    finally:
        proxy.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "fs", "64m", "read-only filesystem") as mountpoint:
        yield mountpoint


def test_read_only_remount(start_moorage, small_fs: Path) -> None:  # type: ignore[no-untyped-def]
    server: RegistryProcess = start_moorage(root=small_fs / "data")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        digest = push_blob(http, "ro/app", b"before the remount", chunked=False)
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        try:
            writes = [http.post("/v2/ro/app/blobs/uploads/"),
                      http.post("/v2/ro/app/blobs/uploads/", params={"digest": digest_of(b"x")}, content=b"x")]
            for r in writes:
                assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
                assert int(r.headers["retry-after"]) >= 1
            read = http.get(f"/v2/ro/app/blobs/{digest}")
            assert read.status_code == 200 and digest_of(read.content) == digest
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        assert http.post("/v2/ro/app/blobs/uploads/").status_code == 202
    record("read-only remount (EROFS)", "filesystem (tmpfs)",
           "writes: 503 UNAVAILABLE +Retry-After; reads: 200", "blob by digest; writes work after remount rw")
