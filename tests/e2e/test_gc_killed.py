"""A `moorage gc` killed with -9 in the middle of its sweep poisons nothing (issue 24, item 6).

The tree holds two thousand old blobs that nothing references, each linked into ``push/app`` (links
younger than any cut-off, so only the blobs are garbage).  `moorage gc` starts sweeping them and is
killed with -9 half-way.  Then a push relies on blobs the dead collector had announced it would delete
but left intact ("layer already exists", then a manifest naming it): each one is accepted (it waits out
the dead collector's lease at most), and the next `moorage gc` removes what the dead one left and keeps
what the pushes use.  (Before: the markers stayed beside the blobs and such pushes were refused.)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
GARBAGE = 2000
PUSHES = 25
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_dir(root: Path, hex_: str) -> Path:
    return root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}"


def plant_garbage(root: Path) -> list[str]:
    """Old unreferenced blobs, linked into push/app by links dated in the future (never stale)."""
    day_ago, future = time.time() - 86400, time.time() + 86400
    hexes = []
    for i in range(GARBAGE):
        data = f"garbage layer {i}".encode()
        hex_ = hashlib.sha256(data).hexdigest()
        path = blob_dir(root, hex_) / "data"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (day_ago, day_ago))
        link = root / f"docker/registry/v2/repositories/push/app/_layers/sha256/{hex_}/link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(f"sha256:{hex_}")
        os.utime(link, (future, future))
        hexes.append(hex_)
    return hexes


def gc_command(server: RegistryProcess) -> list[str]:
    return [server.executable, "gc", str(server.config_path)]


def kill_mid_sweep(server: RegistryProcess, hexes: list[str]) -> None:
    proc = subprocess.Popen(gc_command(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(not blob_dir(server.root, h).exists() for h in hexes[::37]):
        assert proc.poll() is None, "gc ended before it was killed"
        assert time.monotonic() < deadline, "gc never started sweeping"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def announced_by_the_dead(root: Path) -> set[str]:
    """The blob directories the killed collector had said it was deleting: named by a batch marker of
    its run, or (earlier versions) holding a ``condemned`` file."""
    found = {str(marker.parent) for marker in (root / "docker/registry/v2/blobs").rglob("condemned")}
    for marker in (root / "docker/registry/v2/_moorage/gc").glob("*/condemned/*"):
        found |= {str(root) + line for line in marker.read_text().splitlines()}
    return found


def push_relying_on(http: httpx.Client, hex_: str, n: int) -> httpx.Response:
    layer = f"sha256:{hex_}"
    assert http.head(f"/v2/push/app/blobs/{layer}").status_code == 200  # "layer already exists"
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
    assert http.post("/v2/push/app/blobs/uploads/", params={"digest": digest(config)},
                     content=config).status_code == 201
    doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                                 "size": len(config)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                                  "size": len(f"garbage layer {n}")}]}).encode()
    return http.put(f"/v2/push/app/manifests/t{n}", content=doc, headers={"Content-Type": OCI_MANIFEST})


def test_killed_collector_poisons_no_blob(start_moorage: ServerFactory) -> None:
    server = start_moorage({"storage": {"maintenance": {"gc": {"grace": "0s"}}}}, start=False)
    hexes = plant_garbage(server.root)
    server.start()
    kill_mid_sweep(server, hexes)
    announced = announced_by_the_dead(server.root)
    intact = [(n, h) for n, h in enumerate(hexes)
              if (blob_dir(server.root, h) / "data").exists() and str(blob_dir(server.root, h)) in announced]
    assert intact, "the kill did not land in the middle of a batch"
    chosen = intact[:: max(1, len(intact) // PUSHES)][:PUSHES]
    with httpx.Client(base_url=server.url, timeout=120) as http:
        refused = [(n, r.status_code, r.text) for n, h in chosen if (r := push_relying_on(http, h, n)).status_code != 201]
        assert refused == [], f"pushes refused although their layer is intact: {refused[:3]}"
        deadline = time.monotonic() + 90
        while (done := subprocess.run(gc_command(server), capture_output=True, text=True)).returncode != 0:
            assert "another garbage collection holds the lease" in done.stderr + done.stdout, done.stderr
            assert time.monotonic() < deadline, "the dead collector's lease never expired"
            time.sleep(1)
        for n, h in chosen:
            r = http.get(f"/v2/push/app/manifests/t{n}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200
            assert http.get(f"/v2/push/app/blobs/sha256:{h}").content == f"garbage layer {n}".encode()
    leftovers = [p for p in (server.root / "docker").rglob("condemned")]
    assert leftovers == []
    assert not list((server.root / "docker/registry/v2/_moorage/gc").glob("*/condemned/*"))
