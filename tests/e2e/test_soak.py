"""Soak (issue 14): 200 concurrent clients mixing pushes, pulls, manifest and tag reads against a real
`moorage serve` for MOORAGE_SOAK_SECONDS (60 in CI; 600 by hand), with zero errors.  Reports p50/p99
latency per operation and the server's RSS, its workers' included, every few seconds (printed, and
written as JSON to $MOORAGE_SOAK_REPORT when set).  RSS must stay bounded: its last third may not grow
past the first third's peak by more than RSS_GROWTH_LIMIT.

MOORAGE_SOAK_AUTH chooses who the clients are (issue 24): ``none`` (the default: no auth section),
``htpasswd`` (HTTP Basic against an htpasswd file on every request) or ``database`` (HTTP Basic against
the users of the database, ``auth.database``, the user made with ``moorage user add``)::

    MOORAGE_SOAK_SECONDS=600 MOORAGE_SOAK_AUTH=database pytest -s tests/e2e/test_soak.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

pytestmark = pytest.mark.e2e

CLIENTS = int(os.environ.get("MOORAGE_SOAK_CLIENTS", "200"))
AUTH = os.environ.get("MOORAGE_SOAK_AUTH", "none")
USER, PASSWORD = "soaker", "soak-password"
SECONDS = float(os.environ.get("MOORAGE_SOAK_SECONDS", "60"))
RSS_GROWTH_LIMIT = 64 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OPERATIONS = (("push", 1), ("pull", 4), ("manifest", 3), ("tags", 2))


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rss_of(pid: int) -> int:
    """The resident memory of ``pid`` and of its descendants (the worker processes of ``http.workers``)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) * 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += rss_of(int(child))
            except FileNotFoundError:  # ended meanwhile
                pass
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def manifest_for(config: str, config_size: int, layer: str, layer_size: int, note: str) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
        "annotations": {"note": note},
    }).encode()


async def soak(base: str, pid: int, auth: tuple[str, str] | None = None) -> dict[str, object]:
    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = digest_of(config)
    seeded: list[tuple[str, str]] = []  # (repository, tag)
    layers: list[tuple[str, str]] = []  # (repository, digest)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, auth=auth) as http:
        for r in range(10):
            name = f"soak/repo{r}"
            (await http.post(f"/v2/{name}/blobs/uploads/", params={"digest": config_digest},
                             content=config)).raise_for_status()
            for t in range(3):
                layer = os.urandom(256 << 10)
                digest = digest_of(layer)
                (await http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=layer)).raise_for_status()
                body = manifest_for(config_digest, len(config), digest, len(layer), f"seed-{r}-{t}")
                (await http.put(f"/v2/{name}/manifests/v{t}", content=body,
                                headers={"Content-Type": OCI_MANIFEST})).raise_for_status()
                seeded.append((name, f"v{t}"))
                layers.append((name, digest))

        latencies: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        rss: list[tuple[float, int]] = []
        started = time.monotonic()
        deadline = started + SECONDS

        async def client(number: int) -> None:
            rng = random.Random(number)
            names = [name for name, _ in OPERATIONS]
            weights = [weight for _, weight in OPERATIONS]
            i = 0
            while time.monotonic() < deadline:
                i += 1
                op = rng.choices(names, weights)[0]
                t0 = time.monotonic()
                try:
                    if op == "push":
                        name = f"soak/repo{number % 10}"
                        layer = os.urandom(rng.choice([4 << 10, 64 << 10, 512 << 10]))
                        digest = digest_of(layer)
                        r = await http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=layer)
                        if r.status_code == 201:
                            body = manifest_for(config_digest, len(config), digest, len(layer), f"{number}-{i}")
                            r = await http.put(f"/v2/{name}/manifests/c{number}-{i}", content=body,
                                               headers={"Content-Type": OCI_MANIFEST})
                        ok = r.status_code == 201
                    elif op == "pull":
                        name, digest = rng.choice(layers)
                        r = await http.get(f"/v2/{name}/blobs/{digest}")
                        ok = r.status_code == 200 and digest_of(r.content) == digest
                    elif op == "manifest":
                        name, tag = rng.choice(seeded)
                        r = await http.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                        ok = r.status_code == 200
                    else:
                        name, _ = rng.choice(seeded)
                        r = await http.get(f"/v2/{name}/tags/list")
                        ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{op}: {r.status_code} {r.text[:120]}")
                except httpx.HTTPError as e:
                    errors.append(f"{op}: {type(e).__name__} {e}")
                latencies[op].append(time.monotonic() - t0)

        async def sample() -> None:
            while time.monotonic() < deadline:
                rss.append((time.monotonic() - started, rss_of(pid)))
                await asyncio.sleep(max(1.0, SECONDS / 60))

        await asyncio.gather(sample(), *(client(n) for n in range(CLIENTS)))
    elapsed = time.monotonic() - started
    return {
        "clients": CLIENTS, "auth": AUTH, "seconds": round(elapsed, 1), "errors": errors[:20], "error_count": len(errors),
        "requests": sum(len(v) for v in latencies.values()),
        "throughput_per_s": round(sum(len(v) for v in latencies.values()) / elapsed, 1),
        "latency_ms": {op: {"count": len(v), "p50": round(percentile(v, 0.5) * 1000, 1),
                            "p99": round(percentile(v, 0.99) * 1000, 1)} for op, v in sorted(latencies.items())},
        "rss_mib": [(round(t), round(b / (1 << 20), 1)) for t, b in rss],
    }


def with_users(start_moorage, tmp_path: Path) -> tuple[Any, tuple[str, str] | None]:  # type: ignore[no-untyped-def]
    """The server for MOORAGE_SOAK_AUTH, and the clients' credentials."""
    config: dict[str, Any] = {"log": {"accesslog": {"disabled": True}}}
    rules = {"rules": [{"repositories": ["**"], "who": ["authenticated"], "actions": ["*"]}]}
    if AUTH == "none":
        return start_moorage(config), None
    if AUTH == "htpasswd":
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}\n")
        config["auth"] = {"htpasswd": {"realm": "soak", "path": str(htpasswd)}, "access": rules}
        return start_moorage(config), (USER, PASSWORD)
    if AUTH != "database":
        raise pytest.UsageError(f"MOORAGE_SOAK_AUTH must be none, htpasswd or database, not {AUTH!r}")
    config["auth"] = {"database": {}, "access": rules}
    server = start_moorage(config, start=False)
    server.workdir.mkdir(parents=True, exist_ok=True)
    server.config_path.write_text(yaml.safe_dump(server.config))
    added = subprocess.run([server.executable, "user", "add", USER, "--admin", "--config", str(server.config_path)],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    return server.start(), (USER, PASSWORD)


@pytest.mark.timeout(SECONDS + 300)  # the suite's 300 s would stop a 10-minute soak halfway
def test_soak_mixed_clients(start_moorage, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, auth = with_users(start_moorage, tmp_path)
    assert server.proc is not None
    report = asyncio.run(soak(server.url, server.proc.pid, auth))
    text = json.dumps({k: v for k, v in report.items() if k != "rss_mib"}, indent=1) + "\nrss_mib (s, MiB): " + " ".join(
        f"{t}:{m}" for t, m in report["rss_mib"])  # type: ignore[union-attr]
    print("\nSOAK REPORT\n" + text)
    if os.environ.get("MOORAGE_SOAK_REPORT"):
        Path(os.environ["MOORAGE_SOAK_REPORT"]).write_text(text + "\n")
    assert report["error_count"] == 0, report["errors"]
    samples = [b for _, b in report["rss_mib"]]  # type: ignore[union-attr]
    third = max(1, len(samples) // 3)
    assert max(samples[-third:]) - max(samples[:third]) < RSS_GROWTH_LIMIT / (1 << 20), report["rss_mib"]
