"""S3 requests per registry operation, Moorage vs Distribution 2.8.2 on the same S3 server.

Both registries reach moto through an nginx proxy that logs every S3 request (method, URI, copy source),
so both are counted the same way, presigned GETs that clients follow included.  The table is printed
(run with ``-s``) and written to ``s3-request-counts.md`` in the test's directory.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bench.s3 import S3Backend, ServerUnavailable, start_moto
from tests.storage.servers import MOTO_PORTS, Nginx, start_nginx

from .clients import Docker
from .helpers import IN_CI, sha256_digest
from .images import DOCKER_MANIFEST, ImageFactory
from .interop import push_referrer
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
EXTRA_REPOSITORIES = 30


@pytest.fixture(scope="module")
def counted_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Backend, Nginx]]:
    """moto behind a logging nginx; registries get the proxy's address as their endpoint."""
    moto = start_moto(tmp_path_factory.mktemp("moto"), MOTO_PORTS)
    try:
        proxy = start_nginx(tmp_path_factory.mktemp("s3proxy"), [moto.endpoint.removeprefix("http://")],
                            "$request_method $request_uri $http_x_amz_copy_source")
    except ServerUnavailable as e:
        moto.stop()
        if IN_CI:
            pytest.fail(str(e))
        pytest.skip(f"NGINX UNAVAILABLE: {e}")
    counted = S3Backend("moto", f"http://127.0.0.1:{proxy.port}", directory=moto.directory)
    yield counted, proxy
    proxy.stop()
    moto.stop()


def operation(line: str, bucket: str) -> str:
    """The S3 API operation of a logged request (the Go and Python SDKs' names)."""
    method, uri, copy_source = (line.split(" ", 2) + ["", ""])[:3]
    parts = urlsplit(uri)
    query = parse_qs(parts.query, keep_blank_values=True)
    key = parts.path.removeprefix(f"/{bucket}").lstrip("/")
    copy = copy_source not in ("", "-")
    if "X-Amz-Signature" in query or "Signature" in query:
        return f"{method} presigned (client)"
    if not key:
        if method == "GET":
            return "ListMultipartUploads" if "uploads" in query else (
                "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects")
        return "DeleteObjects" if "delete" in query else f"{method} bucket"
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    return "HeadObject" if method == "HEAD" else method


class Meter:
    """S3 requests a block of registry operations caused (read from the proxy's log)."""

    def __init__(self, proxy: Nginx, bucket: str) -> None:
        self.proxy = proxy
        self.bucket = bucket
        self.seen = len(proxy.log_lines())

    def take(self) -> Counter[str]:
        lines = self.settled_lines()
        new, self.seen = lines[self.seen :], len(lines)
        return Counter(operation(line, self.bucket) for line in new if f"/{self.bucket}" in line.split()[1])

    def settled_lines(self, quiet: float = 0.25, limit: float = 5.0) -> list[str]:
        """The log once no line was added for ``quiet`` seconds: nginx writes a request's line after
        answering it, so the last S3 request of an operation may be logged after the client got its
        answer (and would otherwise be counted for the next operation)."""
        lines = self.proxy.log_lines()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            time.sleep(quiet)
            again = self.proxy.log_lines()
            if len(again) == len(lines):
                break
            lines = again
        return lines


def push_small_repositories(c: httpx.Client, count: int) -> None:
    """``count`` more repositories, one tiny image each (to see whether costs grow with the bucket)."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = sha256_digest(config)
    for i in range(count):
        repo = f"extra/r{i:03d}"
        r = c.post(f"/v2/{repo}/blobs/uploads/")  # POST + PUT: Distribution has no monolithic POST
        location = r.headers["Location"]
        r = c.put(location + ("&" if "?" in location else "?") + f"digest={digest}", content=config)
        assert r.status_code == 201, r.text
        doc = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest, "size": len(config)},
            "layers": []}).encode()
        r = c.put(f"/v2/{repo}/manifests/v1", content=doc, headers={"Content-Type": DOCKER_MANIFEST})
        assert r.status_code == 201, r.text


def measure(registry: RegistryProcess, meter: Meter, docker: Docker, images: ImageFactory) -> dict[str, Counter[str]]:
    rows: dict[str, Counter[str]] = {}
    img = images.docker_archive("e2e/costs:1", layers=[images.layer() for _ in range(4)])  # 5 layers
    docker.load(img.path)
    ref = registry.ref("costs/app", "1.0")
    docker.tag(img.tag, ref)
    meter.take()
    digest, _ = docker.push(ref)
    rows["docker push, 5 layers"] = meter.take()
    docker.rmi(ref, img.tag)
    meter.take()
    docker.pull(ref)
    rows["docker pull"] = meter.take()
    with registry.http() as c:
        subject = c.get(f"/v2/costs/app/manifests/{digest}", headers={"Accept": DOCKER_MANIFEST}).content
        referrers_supported = c.get(f"/v2/costs/app/referrers/{digest}").status_code == 200
        if referrers_supported:
            push_referrer(c, "costs/app", digest, subject)
        meter.take()
        assert c.get("/v2/costs/app/tags/list").status_code == 200
        rows["tag list"] = meter.take()
        assert c.get("/v2/_catalog", params={"n": 100}).status_code == 200
        rows["catalog page (1 repository)"] = meter.take()
        if referrers_supported:
            # the first query after a push indexes the revisions it has not scanned yet (catch-up)
            assert c.get(f"/v2/costs/app/referrers/{digest}").status_code == 200
            rows["referrers query (first: catches up)"] = meter.take()
            assert c.get(f"/v2/costs/app/referrers/{digest}").status_code == 200
            rows["referrers query"] = meter.take()
        push_small_repositories(c, EXTRA_REPOSITORIES)
        meter.take()
        assert c.get("/v2/_catalog", params={"n": 10}).status_code == 200
        rows[f"catalog page n=10 ({EXTRA_REPOSITORIES + 1} repositories)"] = meter.take()
        if referrers_supported:
            assert c.get(f"/v2/costs/app/referrers/{digest}").status_code == 200
            rows[f"referrers query ({EXTRA_REPOSITORIES + 1} repositories)"] = meter.take()
    return rows


def table(results: dict[str, dict[str, Counter[str]]]) -> str:
    names = list(results)
    lines = [f"| operation | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    rows = dict.fromkeys(row for counts in results.values() for row in counts)
    for row in rows:
        cells = []
        for name in names:
            counts = results[name].get(row)
            if counts is None:
                cells.append("n/a")
            else:
                detail = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
                cells.append(f"**{sum(counts.values())}** ({detail})" if counts else "**0**")
        lines.append(f"| {row} | {' | '.join(cells)} |")
    return "\n".join(lines)


def test_s3_request_counts_vs_distribution(
    counted_s3: tuple[S3Backend, Nginx],
    start_moorage: ServerFactory,
    start_distribution: ServerFactory,
    docker: Docker,
    images: ImageFactory,
    tmp_path: Path,
) -> None:
    s3, proxy = counted_s3
    results: dict[str, dict[str, Counter[str]]] = {}
    starters: dict[str, Callable[..., RegistryProcess]] = {
        "Moorage": start_moorage, "Distribution 2.8.2": start_distribution,
    }
    for name, factory in starters.items():
        bucket = re.sub(r"[^a-z0-9]", "", name.lower())
        s3.make_bucket(bucket)
        proc = factory(start=False, env={"AWS_CA_BUNDLE": ""})
        proc.config["storage"].pop("filesystem", None)
        proc.config["storage"]["s3"] = s3.parameters(bucket, rootdirectory="/registry", secure=False)
        proc.config["storage"].pop("redirect", None)  # both default to presigned redirects
        proc.start()
        results[name] = measure(proc, Meter(proxy, bucket), docker, images)
        proc.stop()
    report = table(results)
    (tmp_path / "s3-request-counts.md").write_text(report + "\n")
    print("\n" + report)
    moorage, distribution = results["Moorage"], results["Distribution 2.8.2"]
    total = {name: {row: sum(c.values()) for row, c in rows.items()} for name, rows in results.items()}
    m, d = total["Moorage"], total["Distribution 2.8.2"]
    for row in ("docker push, 5 layers", "docker pull", "tag list", "catalog page (1 repository)",
                f"catalog page n=10 ({EXTRA_REPOSITORIES + 1} repositories)"):
        assert m[row] <= d[row], (row, moorage[row], distribution[row])
    # a catalog page visits the page's repositories, never the whole bucket: bounded by the page size
    assert m[f"catalog page n=10 ({EXTRA_REPOSITORIES + 1} repositories)"] <= 3 * 10 + 5
    assert m[f"referrers query ({EXTRA_REPOSITORIES + 1} repositories)"] == m["referrers query"]
