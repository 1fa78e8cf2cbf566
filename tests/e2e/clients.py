"""Thin wrappers over the real registry clients, each isolated from the machine's own config.

* `Docker`: the docker CLI with its own DOCKER_CONFIG; remembers the references it made and removes
  them at teardown.
* `Skopeo`, `Podman`: their own auth file (REGISTRY_AUTH_FILE); podman with its own storage
  (`--root/--runroot`, vfs) so tests never touch /var/lib/containers.
* `Ctr`: containerd's `ctr` in its own namespace; removes its images at teardown.
All talk plain HTTP to loopback registries (`--tls-verify=false`, `--plain-http`) unless told otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .helpers import run, unique


class Docker:
    """The docker CLI (Debian's /usr/bin/docker when present) with an isolated DOCKER_CONFIG."""

    def __init__(self, binary: str, config_dir: Path) -> None:
        self.binary = binary
        self.config_dir = config_dir
        self.env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
        self.made: list[str] = []

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.binary, *args], env=self.env, timeout=timeout, check=check)

    def load(self, archive: Path) -> str:
        """`docker load -i`; returns the loaded reference."""
        out = self("load", "-i", str(archive)).stdout
        m = re.search(r"Loaded image(?: ID)?: (\S+)", out)
        assert m, f"unexpected docker load output: {out!r}"
        self.made.append(m.group(1))
        return m.group(1)

    def tag(self, src: str, dst: str) -> None:
        self("tag", src, dst)
        self.made.append(dst)

    def push(self, ref: str, timeout: float = 600) -> tuple[str, str]:
        """`docker push`; returns (manifest digest, combined output)."""
        p = self("push", ref, timeout=timeout)
        out = p.stdout + p.stderr
        m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", out)
        assert m, f"no digest in docker push output:\n{out}"
        return m.group(1), out

    def push_and_pull_back(self, ref: str, local_tag: str, image_id: str) -> str:
        """Push `ref` (at least two layers and the config), remove it and `local_tag` here, pull it again: the
        same image, under the digest the push reported (returned)."""
        digest, out = self.push(ref)
        assert out.count("Pushed") >= 3, out
        self.rmi(ref, local_tag)
        self.pull(ref)
        assert self.inspect(ref)["Id"] == image_id
        assert self.repo_digest(ref) == digest
        return digest

    def pull(self, ref: str, platform: str | None = None, timeout: float = 600) -> str:
        """`docker pull [--platform P]`; returns the output."""
        args = ["pull", *(["--platform", platform] if platform else []), ref]
        p = self(*args, timeout=timeout)
        self.made.append(ref)
        return p.stdout + p.stderr

    def pull_all(self, repo: str, timeout: float = 600) -> str:
        """`docker pull -a REPO` (every tag); returns the output."""
        p = self("pull", "-a", repo, timeout=timeout)
        self.made.extend(f"{repo}:{tag}" for tag in re.findall(r"^(\S+): Pulling from", p.stdout, re.M))
        return p.stdout + p.stderr

    def rmi(self, *refs: str) -> None:
        """Remove local references, ignoring the ones that do not exist."""
        if refs:
            self("rmi", *refs, check=False)

    def exists(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def repo_digest(self, ref: str) -> str:
        """The digest in the image's RepoDigests for the repository of `ref`."""
        repo = ref.split("@", 1)[0]
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        for rd in self.inspect(ref).get("RepoDigests") or []:
            name, _, digest = rd.partition("@")
            if name == repo:
                return digest
        raise AssertionError(f"no RepoDigest for {repo} in {self.inspect(ref).get('RepoDigests')}")

    def cleanup(self) -> None:
        """Remove every reference this object loaded, tagged or pulled."""
        refs = list(dict.fromkeys(self.made))
        self.made.clear()
        for i in range(0, len(refs), 50):
            self.rmi(*refs[i : i + 50])


class AuthFileClient:
    """A containers-tools CLI with an auth file of its own (REGISTRY_AUTH_FILE) in ``workdir``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.authfile = workdir / "auth.json"
        if not self.authfile.exists():
            self.authfile.write_text("{}")
        self.env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.authfile)}
        self.base = [binary]

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.base, *args], env=self.env, timeout=timeout, check=check)


class VfsStorageClient(AuthFileClient):
    """Also with image storage of its own: vfs below ``workdir``, run state in a short temporary directory
    (podman allows at most 50 characters)."""

    def __init__(self, binary: str, workdir: Path, *options: str) -> None:
        super().__init__(binary, workdir)
        self.runroot = Path(tempfile.mkdtemp(prefix=f"{Path(binary).name}-e2e-"))
        self.base = [binary, "--root", str(workdir / "root"), "--runroot", str(self.runroot), "--storage-driver", "vfs",
                     *options]

    def cleanup(self) -> None:
        """Drop the images and storage of this test (vfs: plain directories)."""
        self("rmi", "--all", "--force", check=False, timeout=120)
        shutil.rmtree(self.workdir / "root", ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


class Skopeo(AuthFileClient):
    """skopeo with an isolated auth file."""

    def copy(self, src: str, dst: str, *extra: str, timeout: float = 600) -> str:
        """`skopeo copy` with TLS verification off on both sides; returns the output."""
        p = self("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst, timeout=timeout)
        return p.stdout + p.stderr

    def raw(self, ref: str) -> bytes:
        """The manifest bytes exactly as served (`skopeo inspect --raw`)."""
        p = subprocess.run(
            [self.binary, "inspect", "--tls-verify=false", "--raw", ref],
            env=self.env,
            capture_output=True,
            timeout=120,
        )
        assert p.returncode == 0, f"skopeo inspect --raw {ref} failed: {p.stderr.decode(errors='replace')}"
        return p.stdout

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self("inspect", "--tls-verify=false", ref).stdout)


class Podman(VfsStorageClient):
    """podman with its own storage (vfs under `workdir`) and auth file."""

    def __init__(self, binary: str, workdir: Path) -> None:
        super().__init__(binary, workdir, "--events-backend", "file", "--cgroup-manager", "cgroupfs")


class Ctr:
    """containerd's `ctr` in a namespace of its own."""

    def __init__(self, binary: str, namespace: str | None = None) -> None:
        self.binary = binary
        self.namespace = namespace or unique("moorage-e2e")

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.binary, "-n", self.namespace, *args], timeout=timeout, check=check)

    def images(self) -> list[str]:
        return [line for line in self("images", "ls", "-q").stdout.splitlines() if line.strip()]

    def content_digests(self) -> set[str]:
        return {line.split()[0] for line in self("content", "ls", "-q").stdout.splitlines() if line.strip()}

    def remove_all(self) -> None:
        """Remove every image of the namespace, synchronously garbage-collecting its content."""
        imgs = self.images()
        if imgs:
            self("images", "rm", "--sync", *imgs, check=False)
        leftover = self.content_digests()
        if leftover:
            self("content", "rm", *sorted(leftover), check=False)

    def cleanup(self) -> None:
        self.remove_all()
        run([self.binary, "namespaces", "rm", self.namespace], check=False, timeout=60)


class Buildah(VfsStorageClient):
    """buildah with its own storage (vfs) and auth file; builds images from scratch, offline."""

    def cleanup(self) -> None:
        """Drop this test's buildah containers, then its images and storage."""
        self("rm", "--all", check=False, timeout=120)
        super().cleanup()
