"""Replication between real registries (docs/replication.md): `moorage serve` replicating to and from
Distribution 2.8.2 and another Moorage (on the filesystem, on S3/moto), driven by docker, skopeo and oras.

* an event rule copies a `docker push` to Distribution and to a Moorage on S3 within 5 s, same digest,
  and a delete follows;
* a scheduled pull rule copies a multi-arch index with an oras-attached referrer from Distribution,
  and `skopeo inspect --raw` reads the same bytes on both sides;
* faults: the remote down during a run (the execution fails, is retried, completes when it is back),
  kill -9 of the replica mid-run (another replica resumes, nothing that arrived is sent again), the
  remote's disk full (a clear error on that item, the others arrive), wrong credentials (one clear
  error, no retry storm).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auth.htpasswd import set_password
from bench.s3 import S3Backend

from .clients import Docker, Skopeo
from .helpers import mounted_tmpfs, unique
from .images import MANIFEST_ACCEPT, OCI_INDEX, ImageFactory
from .moto import moto_or_skip
from .servers import RegistryProcess, ServerFactory

pytestmark = pytest.mark.e2e
MiB = 1 << 20


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


def digest_of(server: RegistryProcess, repo: str, reference: str) -> str | None:
    with server.http(timeout=10) as c:
        r = c.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
    return r.headers.get("docker-content-digest") if r.status_code == 200 else None


def executions(server: RegistryProcess, rule: str, auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    with server.http(timeout=10, auth=auth) as c:
        r = c.get(f"/api/v1/replication/rules/{rule}/executions", params={"n": "100"})
    assert r.status_code == 200, r.text
    return list(r.json()["executions"])


def finished(found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The executions once none is queued or running (else None, to wait on)."""
    return found if found and all(e["state"] in ("succeeded", "failed") for e in found) else None


def failed_items(server: RegistryProcess, rule: str, execution: str) -> list[dict[str, Any]]:
    with server.http(timeout=10) as c:
        r = c.get(f"/api/v1/replication/rules/{rule}/executions/{execution}/items", params={"status": "failed"})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def run_rule(server: RegistryProcess, rule: str) -> str:
    with server.http(timeout=10) as c:
        r = c.post(f"/api/v1/replication/rules/{rule}/executions")
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def replication(remotes: list[dict[str, Any]], rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"replication": {"remotes": remotes, "rules": rules, "poll": "0.5s", "lease": "3s", **extra}}


def push_images(server: RegistryProcess, repos: list[str], layer_size: int) -> dict[str, str]:
    """One OCI image per repository (a random layer of ``layer_size`` and a config); returns repo -> digest."""
    pushed = {}
    with server.http(timeout=120) as c:
        for repo in repos:
            layer, config = os.urandom(layer_size), json.dumps({"os": "linux", "architecture": "amd64",
                                                                "repo": repo}).encode()
            descriptors = []
            for data, media_type in ((config, "application/vnd.oci.image.config.v1+json"),
                                     (layer, "application/vnd.oci.image.layer.v1.tar")):
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                assert c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
                descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
            doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": descriptors[0], "layers": descriptors[1:]}
            r = c.put(f"/v2/{repo}/manifests/v1", content=json.dumps(doc).encode(),
                      headers={"Content-Type": doc["mediaType"]})
            assert r.status_code == 201, r.text
            pushed[repo] = r.headers["docker-content-digest"]
    return pushed


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    yield from moto_or_skip(tmp_path_factory.mktemp("moto"), "replication to S3")


def moorage_on_s3(start_moorage: ServerFactory, s3: S3Backend) -> RegistryProcess:
    proc = start_moorage(start=False, env={"AWS_CA_BUNDLE": ""})
    proc.config["storage"].pop("filesystem", None)
    proc.config["storage"]["s3"] = s3.parameters(s3.make_bucket(), rootdirectory="/b", secure=False)
    proc.config["storage"]["redirect"] = {"disable": True}
    return proc.start()


def test_a_docker_push_reaches_distribution_and_a_moorage_on_s3_within_5s_and_a_delete_follows(
    start_moorage: ServerFactory, start_distribution: ServerFactory, moto: S3Backend, docker: Docker,
    images: ImageFactory,
) -> None:
    dist = start_distribution()
    other = moorage_on_s3(start_moorage, moto)
    rules = [{"name": f"to-{name}", "direction": "push", "remote": name, "repositories": ["payments/**"],
              "trigger": "event", "deletes": True} for name in ("dist", "other")]
    here = start_moorage(replication([{"name": "dist", "url": dist.url}, {"name": "other", "url": other.url}], rules))
    repo = f"payments/{unique('api')}"
    image = images.docker_archive(f"{repo}:1.0")
    loaded = docker.load(image.path)
    docker.tag(loaded, here.ref(repo, "1.0"))
    digest, _ = docker.push(here.ref(repo, "1.0"))
    pushed = time.monotonic()
    for server in (dist, other):
        wait_for(lambda s=server: digest_of(s, repo, "1.0") == digest, 5.0 - (time.monotonic() - pushed),
                 f"{repo}:1.0 on {server.kind} {server.url}")
    docker.rmi(here.ref(repo, "1.0"))
    docker.pull(other.ref(repo, "1.0"))  # whole: every layer arrived
    assert docker.repo_digest(other.ref(repo, "1.0")) == digest
    with here.http() as c:
        assert c.delete(f"/v2/{repo}/manifests/1.0").status_code == 202
    for server in (dist, other):  # Distribution 2.8 cannot untag: the manifest goes by digest there
        wait_for(lambda s=server: digest_of(s, repo, "1.0") is None, 10.0, f"delete on {server.kind}")
    for rule in ("to-dist", "to-other"):  # the delete shows there a moment before its execution records it
        done = wait_for(lambda r=rule: finished(executions(here, r)), 10.0, f"{rule}'s executions finished")
        assert all(e["state"] == "succeeded" and e["trigger"] == "event" for e in done), done


def test_a_scheduled_pull_copies_a_multi_arch_index_with_an_oras_referrer_from_distribution(
    start_moorage: ServerFactory, start_distribution: ServerFactory, skopeo: Skopeo, oras: ModuleType,
    images: ImageFactory, tmp_path: Path,
) -> None:
    dist = start_distribution()
    repo = f"vendor/{unique('tool')}"
    layout = images.oci_index("1.0", platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"))
    skopeo.copy(layout.ref, f"docker://{dist.ref(repo, '1.0')}", "--all", "--preserve-digests")
    reg = oras.connect(dist.host)
    subject = oras.subject_of(reg, dist.ref(repo, "1.0"))
    (tmp_path / "sig.json").write_text('{"signed": true}')
    referrer = oras.push(reg, dist.ref(repo, "sig"), [tmp_path / "sig.json"], subject=subject,
                         config_media_type="application/vnd.example.signature.config+json")
    # what `oras attach` writes on a registry without the referrers API: the tag schema's index
    body, media_type = oras.manifest_bytes(reg, f"{dist.host}/{repo}@{referrer.digest}")
    fallback = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": media_type, "digest": referrer.digest, "size": len(body),
         "artifactType": "application/vnd.example.signature.config+json"}]}
    with dist.http() as c:
        r = c.put(f"/v2/{repo}/manifests/sha256-{subject.digest.split(':')[1]}", content=json.dumps(fallback),
                  headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201, r.text
    rule = {"name": "from-dist", "direction": "pull", "remote": "dist", "repositories": ["vendor/*"],
            "tags": ["1.*"], "trigger": "schedule", "interval": "2s", "destination": {"prefix": "mirror"}}
    here = start_moorage(replication([{"name": "dist", "url": dist.url}], [rule]))
    local = f"mirror/{repo}"
    wait_for(lambda: digest_of(here, local, "1.0") == subject.digest, 30.0, "the index pulled in")
    assert skopeo.raw(f"docker://{here.ref(local, '1.0')}") == skopeo.raw(f"docker://{dist.ref(repo, '1.0')}")
    for child in layout.manifests.values():
        assert skopeo.raw(f"docker://{here.ref(local)}@{child}") == skopeo.raw(f"docker://{dist.ref(repo)}@{child}")
    with here.http() as c:
        listed = c.get(f"/v2/{local}/referrers/{subject.digest}").json()["manifests"]
    assert [m["digest"] for m in listed] == [referrer.digest]
    assert digest_of(here, local, "sig") is None  # the tag filter left it out; it came as a referrer
    runs = wait_for(lambda: (done := [e for e in executions(here, "from-dist") if e["state"] == "succeeded"])[1:]
                    and done, 30.0, "a second scheduled run")
    assert runs[0]["counts"]["unchanged"] == 1 and runs[0]["bytes"] == 0  # the newest: nothing to copy again
    assert runs[-1]["counts"]["copied"] == 1 and {e["trigger"] for e in runs} == {"schedule"}


def test_the_remote_down_fails_the_execution_which_is_retried_and_completes_when_it_is_back(
    start_moorage: ServerFactory,
) -> None:
    there = start_moorage()
    rule = {"name": "to-there", "direction": "push", "remote": "there", "repositories": ["team/**"],
            "requestretries": 1, "retry": {"attempts": 5, "backoff": "2s"}}
    here = start_moorage(replication([{"name": "there", "url": there.url, "timeout": "2s"}], [rule]))
    pushed = push_images(here, [f"team/app{i}" for i in range(6)], 64 << 10)
    there.stop()
    first = run_rule(here, "to-there")
    failed = wait_for(lambda: next((e for e in executions(here, "to-there") if e["id"] == first and
                                    e["state"] == "failed"), None), 30.0, "the execution failing")
    assert "stopped answering" in failed["error"], failed
    there.start()
    done = wait_for(lambda: next((e for e in executions(here, "to-there")
                                  if e["retry_of"] and e["state"] == "succeeded"), None), 60.0, "a retry succeeding")
    assert done["attempt"] >= 2
    for repo, digest in pushed.items():
        assert digest_of(there, repo, "v1") == digest


def uploads_completed(server: RegistryProcess) -> dict[str, int]:
    """How often each blob was uploaded completely (a 201 to ``PUT .../uploads/...?digest=``), from the
    JSON access log."""
    counted: dict[str, int] = {}
    for line in server.log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        message = str(event.get("msg", ""))
        found = re.search(r'"PUT /v2/\S+/blobs/uploads/\S+\?\S*digest=(sha256(?:%3A|:)[0-9a-f]{64})', message)
        if found and event.get("status") == 201:
            digest = found.group(1).replace("%3A", ":")
            counted[digest] = counted.get(digest, 0) + 1
    return counted


def test_kill_9_of_the_replica_mid_run_hands_the_execution_to_another_that_resumes(
    start_moorage: ServerFactory, tmp_path: Path,
) -> None:
    there = start_moorage({"log": {"formatter": "json"}})
    shared = tmp_path / "shared-data"
    rule = {"name": "slow", "direction": "push", "remote": "there", "repositories": ["team/**"],
            "concurrency": 1, "bandwidth": "1MB"}
    config = replication([{"name": "there", "url": there.url}], [rule])
    first = start_moorage(config, root=shared)
    pushed = push_images(first, [f"team/app{i:02d}" for i in range(8)], 1 * MiB)  # about 8 s at 1 MB/s
    execution = run_rule(first, "slow")
    wait_for(lambda: next((e for e in executions(first, "slow") if e["id"] == execution
                           and e["counts"]["copied"] >= 2), None), 30.0, "two items copied")
    second = start_moorage(config, root=shared)  # the same storage: a replica
    assert first.proc is not None
    killed = first.proc.pid
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    first.proc = None
    done = wait_for(lambda: next((e for e in executions(second, "slow") if e["id"] == execution
                                  and e["state"] == "succeeded"), None), 60.0, "the other replica finishing")
    assert done["holder"] and not done["holder"].endswith(f":{killed}")  # finished by the other replica
    # an item that arrived after the last checkpoint is found there (unchanged), not sent again
    assert done["counts"]["copied"] + done["counts"]["unchanged"] == 8 and done["counts"]["failed"] == 0
    for repo, digest in pushed.items():
        assert digest_of(there, repo, "v1") == digest
    sent = uploads_completed(there)
    assert sent and max(sent.values()) == 1, sent  # nothing that had arrived was sent again


def test_the_remotes_disk_full_fails_that_item_with_a_clear_error_and_the_others_arrive(
    start_moorage: ServerFactory, tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "tiny", "6m", "remote disk full") as tiny:
        there = start_moorage(root=tiny)
        # one blob at a time: while the huge one fills the disk, nothing else is being written there
        rule = {"name": "to-there", "direction": "push", "remote": "there", "repositories": ["team/**"],
                "retry": {"attempts": 0}, "concurrency": 1}
        here = start_moorage(replication([{"name": "there", "url": there.url}], [rule]))
        small = push_images(here, [f"team/small{i}" for i in range(3)], 256 << 10)
        push_images(here, ["team/huge"], 16 * MiB)
        execution = run_rule(here, "to-there")
        done = wait_for(lambda: next((e for e in executions(here, "to-there") if e["id"] == execution
                                      and e["state"] == "failed"), None), 60.0, "the execution ending")
        assert done["counts"]["copied"] == 3 and done["counts"]["failed"] == 1
        [item] = failed_items(here, "to-there", execution)
        assert item["source"] == "team/huge"
        assert "HTTP 507" in item["outcome"]["note"] and "no space left" in item["outcome"]["note"], item
        for repo, digest in small.items():
            assert digest_of(there, repo, "v1") == digest


def test_wrong_credentials_give_one_clear_error_and_no_retry_storm(start_moorage: ServerFactory,
                                                                   tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    set_password(htpasswd, "replicator", "right", cost=4)
    there = start_moorage({"auth": {"htpasswd": {"realm": "there", "path": str(htpasswd)}},
                           "log": {"formatter": "json"}})
    remote = {"name": "there", "url": there.url, "username": "replicator", "password": "wrong"}
    rule = {"name": "to-there", "direction": "push", "remote": "there", "repositories": ["team/**"],
            "retry": {"attempts": 3, "backoff": "1s"}}
    here = start_moorage(replication([remote], [rule]))
    push_images(here, [f"team/app{i}" for i in range(20)], 4 << 10)
    before = len(refused(there))  # the test harness's own GET /v2/ at start-up
    execution = run_rule(here, "to-there")
    done = wait_for(lambda: next((e for e in executions(here, "to-there") if e["id"] == execution
                                  and e["state"] == "failed"), None), 30.0, "the execution failing")
    assert "refused the credentials of 'replicator'" in done["error"], done
    assert done["counts"]["failed"] == 0 and failed_items(here, "to-there", execution) == []
    time.sleep(3)  # a retry would have started by now
    assert [e["id"] for e in executions(here, "to-there")] == [execution]
    count = len(refused(there)) - before
    assert count <= 2, f"{count} refused requests for one execution"  # GET /v2/ anonymously, then with Basic


def refused(server: RegistryProcess) -> list[str]:
    """The requests ``server`` answered 401, from its JSON access log."""
    return [line for line in server.log_path.read_text().splitlines()
            if '"logger":"moorage.access"' in line and '"status":401' in line]
