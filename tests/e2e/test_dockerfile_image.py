"""The Dockerfile: build the image on a locally made base, run it with dockerd, push and pull against it.

Nothing can be pulled from Docker Hub here, so the base (`BASE` build argument; python:3.11-slim
elsewhere) is a minimal Debian bookworm with python3 made by `debootstrap` and `docker import`ed
(about a minute, once: the image `moorage-test/debian-python3:bookworm` is kept for later runs;
MOORAGE_TEST_BASE names another one). pip cannot reach an index from inside the build, so the test
hands the build a wheelhouse made on this machine (`PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheels`).

dockerd runs here with `--bridge=none` (no default bridge network, so no `-p 5000:5000`
publishing): the container runs with `--network host` and its addresses moved to the test's
ports through REGISTRY_* variables. Everything else is the README's
`docker run -d -v DIR:/var/lib/registry IMAGE`, with DIR not existing beforehand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import REPO, free_port

from .clients import Docker
from .helpers import missing_client, run, unique
from .images import ImageFactory

pytestmark = pytest.mark.e2e
BASE_IMAGE = "moorage-test/debian-python3:bookworm"
DEBIAN_MIRROR = os.environ.get("MOORAGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def ensure_base(docker: Docker, workdir: Path) -> str:
    """MOORAGE_TEST_BASE, or the cached debootstrapped base, or make it now."""
    wanted = os.environ.get("MOORAGE_TEST_BASE")
    if wanted:
        return wanted
    if docker.exists(BASE_IMAGE):
        return BASE_IMAGE
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        missing_client("debootstrap not installed (to make a base image offline)", "apt-get install debootstrap")
        raise AssertionError("unreachable")
    root = workdir / "rootfs"
    run([debootstrap, "--variant=minbase", "--include=python3,python3-venv", "bookworm", root, DEBIAN_MIRROR],
        timeout=600)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale"):
        shutil.rmtree(root / junk, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [docker.binary, "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "-", BASE_IMAGE], stdin=tar.stdout, env=docker.env, capture_output=True, text=True, timeout=300)
    tar.wait()
    shutil.rmtree(root, ignore_errors=True)
    assert imported.returncode == 0, imported.stderr
    return BASE_IMAGE


def build_context(workdir: Path) -> Path:
    """The repository as the build sees it (.dockerignore's names left out) plus a wheelhouse."""
    ignored = [line.strip().removeprefix("**/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    ctx = workdir / "context"
    shutil.copytree(REPO, ctx, ignore=shutil.ignore_patterns(*ignored))
    shutil.copy(REPO / "Dockerfile", ctx / "Dockerfile")
    run([sys.executable, "-m", "pip", "wheel", "-q", f"{REPO}[granian]", "setuptools>=68", "--wheel-dir",
         ctx / "wheels"], timeout=600)
    for own in (ctx / "wheels").glob("moorage-*.whl"):
        own.unlink()  # the build installs Moorage from the copied source
    return ctx


@pytest.fixture(scope="module")
def image(docker_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the repository's Dockerfile (once for the module)."""
    workdir = tmp_path_factory.mktemp("image")
    (workdir / "docker-config").mkdir()
    docker = Docker(docker_bin, workdir / "docker-config")
    base = ensure_base(docker, workdir)
    tag = f"moorage-test/moorage:{unique('e2e')}"
    ctx = build_context(workdir)
    run(["env", "DOCKER_BUILDKIT=0", docker.binary, "build", "-q", "--build-arg", f"BASE={base}",
         "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/src/wheels", "-t", tag, ctx],
        env=docker.env, timeout=900)
    shutil.rmtree(ctx, ignore_errors=True)
    yield tag
    docker("rmi", "-f", tag, check=False)


def wait_healthy(docker: Docker, cid: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state: dict[str, object] = {}
    while time.monotonic() < deadline:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", cid).stdout)
        health = state.get("Health") or {}
        if isinstance(health, dict) and health.get("Status") == "healthy":
            return
        if not state.get("Running"):
            break
        time.sleep(0.5)
    logs = docker("logs", cid, check=False)
    raise AssertionError(f"container not healthy: {state}\n{logs.stdout}{logs.stderr}")


def test_image_runs_pushes_and_pulls(image: str, docker: Docker, images: ImageFactory, tmp_path: Path) -> None:
    meta = docker.inspect(image)["Config"]
    assert meta["ExposedPorts"] == {"5000/tcp": {}}
    assert meta["Volumes"] == {"/var/lib/registry": {}}
    assert meta["Healthcheck"]["Test"][0] == "CMD"
    assert meta["Cmd"] == ["moorage", "serve", "/etc/moorage/config.yml"]
    assert "STOPSIGNAL" not in meta or meta.get("StopSignal") in (None, "SIGTERM")

    data = tmp_path / "opt-data-registry"  # does not exist: docker creates it, owned by root
    port, debug = free_port(), free_port()
    cid = docker(
        "run", "-d", "--network", "host", "--health-interval", "1s",
        "-e", f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}", "-e", f"REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:{debug}",
        "-e", f"MOORAGE_HEALTHCHECK_URL=http://127.0.0.1:{debug}/readyz",
        "-v", f"{data}:/var/lib/registry", image,
    ).stdout.strip()
    try:
        wait_healthy(docker, cid)
        pid = json.loads(docker("inspect", "--format", "{{json .State.Pid}}", cid).stdout)
        uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith("Uid:"))
        assert uid_line.split()[1:3] == ["5000", "5000"], uid_line  # the server does not run as root

        img = images.docker_archive(f"e2e/{unique('img')}:1", layers=[images.layer(), images.layer()])
        docker.load(img.path)
        ref = f"127.0.0.1:{port}/image/test:1"
        docker.tag(img.tag, ref)
        digest, _ = docker.push(ref)
        docker.rmi(ref, img.tag)
        docker.pull(ref)
        assert docker.repo_digest(ref) == digest
        blobs = data / "docker" / "registry" / "v2" / "blobs"
        assert blobs.is_dir() and blobs.stat().st_uid == 5000
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}

        started = time.monotonic()
        docker("stop", "-t", "40", cid)
        assert time.monotonic() - started < 20
        state = json.loads(docker("inspect", "--format", "{{json .State}}", cid).stdout)
        assert state["ExitCode"] == 0, state
    finally:
        docker("rm", "-f", cid, check=False)
        shutil.rmtree(data, ignore_errors=True)


def test_image_defaults_need_no_configuration(image: str, docker: Docker) -> None:
    """No variables, no config, an anonymous volume: inside the container (its own network namespace,
    `--network none`) the registry answers on :5000 and the HEALTHCHECK turns healthy."""
    cid = docker("run", "-d", "--network", "none", "--health-interval", "1s", image).stdout.strip()
    try:
        wait_healthy(docker, cid)
        probe = ("import json, urllib.request; "
                 "r = urllib.request.urlopen('http://127.0.0.1:5000/v2/'); "
                 "print(r.status, r.headers['Docker-Distribution-Api-Version'])")
        assert docker("exec", cid, "python3", "-c", probe).stdout.split() == ["200", "registry/2.0"]
        status = docker("exec", cid, "cat", "/proc/1/status").stdout  # PID 1: the server itself
        assert next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1] == "5000", status
    finally:
        docker("rm", "-f", "-v", cid, check=False)
