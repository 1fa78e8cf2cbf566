"""Make container images offline (nothing can be pulled from Docker Hub here).

* `docker_archive()`: a `docker load`-able archive (also `skopeo copy docker-archive:`, `podman load`,
  `ctr images import`), uncompressed layers, for any platform.
* `oci_index_layout()`: an OCI image layout whose tag points at an OCI image index with one image
  manifest per platform (gzip layers shared between platforms plus one per-platform layer).
  Push it with `skopeo copy --all --preserve-digests oci:DIR:TAG docker://HOST/REPO:TAG`.

Layers are tar files on disk (so a 300 MB layer never sits in memory), deterministic (mtime 0,
root-owned): the same content gives the same digests. `ImageFactory` adds a unique file to each
image so that tests never share blobs by accident (in the docker daemon, containerd or a registry).
Every image config carries the label `org.example.platform=OS/ARCH[/VARIANT]`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .helpers import file_digest, sha256_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
PLATFORM_LABEL = "org.example.platform"


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar on disk; `diff_id` is its sha256 digest."""

    path: Path
    diff_id: str
    size: int


class _RandomReader(io.RawIOBase):
    """`size` bytes of os.urandom, read sequentially (incompressible content)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def _dir_entries(dest: str, made: set[str]) -> list[tarfile.TarInfo]:
    parts = dest.split("/")[:-1]
    out = []
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in made:
            made.add(d)
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = 0
            out.append(ti)
    return out


def write_layer(path: Path, files: Mapping[str, bytes | tuple[int, IO[bytes]]]) -> Layer:
    """Write a deterministic layer tar: `files` maps a path in the image to bytes or (size, reader)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    made: set[str] = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for dest, content in files.items():
            dest = dest.lstrip("/")
            for ti in _dir_entries(dest, made):
                tf.addfile(ti)
            ti = tarfile.TarInfo(dest)
            ti.mode = 0o644
            ti.mtime = 0
            if isinstance(content, bytes):
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
            else:
                ti.size, reader = content
                tf.addfile(ti, reader)
    return Layer(path=path, diff_id=file_digest(path), size=path.stat().st_size)


def write_random_layer(path: Path, size: int, dest: str = "/random.bin") -> Layer:
    """A layer holding one file of `size` incompressible bytes (streamed to disk)."""
    return write_layer(path, {dest: (size, _RandomReader(size))})  # type: ignore[dict-item]


def parse_platform(platform: str) -> dict[str, str]:
    """`linux/arm/v7` -> {"os": "linux", "architecture": "arm", "variant": "v7"}."""
    parts = platform.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def image_config(platform: str, diff_ids: Sequence[str], labels: Mapping[str, str] | None = None) -> bytes:
    """A minimal image config JSON (Docker and OCI accept the same one)."""
    plat = parse_platform(platform)
    cfg: dict[str, Any] = {
        "architecture": plat["architecture"],
        "os": plat["os"],
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {PLATFORM_LABEL: platform, **(labels or {})},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests/e2e/images.py"} for _ in diff_ids],
    }
    if "variant" in plat:
        cfg["variant"] = plat["variant"]
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DockerArchive:
    """A `docker load`-able archive; `image_id` is the config digest (docker's image ID)."""

    path: Path
    tag: str
    image_id: str
    layers: tuple[Layer, ...]
    platform: str


def docker_archive(
    out: Path,
    tag: str,
    layers: Sequence[Layer],
    platform: str = "linux/amd64",
    labels: Mapping[str, str] | None = None,
) -> DockerArchive:
    """Write a docker-archive (`docker save` format) holding one image of `layers`."""
    cfg = image_config(platform, [layer.diff_id for layer in layers], labels)
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tf:

        def add_bytes(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(data))

        names = []
        for layer in layers:
            name = layer.diff_id.split(":", 1)[1] + "/layer.tar"
            if name not in names:
                ti = tf.gettarinfo(str(layer.path), arcname=name)
                ti.mtime = 0
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                with open(layer.path, "rb") as f:
                    tf.addfile(ti, f)
            names.append(name)
        add_bytes(cfg_name, cfg)
        add_bytes("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]).encode())
    return DockerArchive(path=out, tag=tag, image_id=sha256_digest(cfg), layers=tuple(layers), platform=platform)


@dataclass(frozen=True)
class OciIndex:
    """An OCI layout at `path` whose `tag` is an index; `manifests` maps platform -> manifest digest."""

    path: Path
    tag: str
    digest: str
    manifests: dict[str, str] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The skopeo/podman source reference `oci:PATH:TAG`."""
        return f"oci:{self.path}:{self.tag}"


def oci_index_layout(
    out: Path,
    tag: str,
    platforms: Sequence[str],
    shared: Sequence[Layer] = (),
    labels: Mapping[str, str] | None = None,
) -> OciIndex:
    """Write an OCI image layout: `tag` -> OCI index -> one OCI image manifest per platform."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256_digest(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    def gz(data: bytes) -> bytes:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
            g.write(data)
        return buf.getvalue()

    shared_gz = [(layer.diff_id, gz(layer.path.read_bytes())) for layer in shared]
    manifests: list[dict[str, Any]] = []
    by_platform: dict[str, str] = {}
    configs: dict[str, str] = {}
    for platform in platforms:
        own = out / "own-layers" / (platform.replace("/", "-") + ".tar")
        own_layer = write_layer(own, {"/platform.txt": f"{platform}\n{out.name}\n".encode()})
        layers = shared_gz + [(own_layer.diff_id, gz(own.read_bytes()))]
        cfg = image_config(platform, [d for d, _ in layers], labels)
        man = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": put(cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER_GZ, "digest": put(z), "size": len(z)} for _, z in layers],
        }
        mb = json.dumps(man, indent=2).encode()
        digest = put(mb)
        by_platform[platform] = digest
        configs[platform] = sha256_digest(cfg)
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(mb),
                "platform": parse_platform(platform),
            }
        )
    shutil.rmtree(out / "own-layers")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, indent=2).encode()
    idig = put(index)
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_INDEX,
                "digest": idig,
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (out / "index.json").write_text(json.dumps(top, indent=2))
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return OciIndex(path=out, tag=tag, digest=idig, manifests=by_platform, configs=configs)


class ImageFactory:
    """Makes unique test images under one directory (one per test)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)

    def _path(self, suffix: str) -> Path:
        return self.workdir / f"{uuid.uuid4().hex[:12]}{suffix}"

    def layer(self, files: Mapping[str, bytes] | None = None) -> Layer:
        """A small layer; without `files`, one file with unique content."""
        return write_layer(self._path(".layer.tar"), files or {f"/data/{uuid.uuid4().hex}.txt": os.urandom(512)})

    def random_layer(self, size: int) -> Layer:
        """A layer of `size` incompressible bytes."""
        return write_random_layer(self._path(".layer.tar"), size)

    def docker_archive(
        self,
        tag: str = "e2e/image:latest",
        layers: Sequence[Layer] | None = None,
        platform: str = "linux/amd64",
        labels: Mapping[str, str] | None = None,
    ) -> DockerArchive:
        """An archive of `layers` (default: two unique small ones) plus a unique last layer."""
        base = list(layers) if layers is not None else [self.layer(), self.layer()]
        marker = self.layer({"/image-id.txt": uuid.uuid4().hex.encode()})
        return docker_archive(self._path(".docker.tar"), tag, [*base, marker], platform, labels)

    def oci_index(
        self,
        tag: str = "v1",
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        shared: Sequence[Layer] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> OciIndex:
        """An OCI layout with a multi-platform index; unique shared layers unless given."""
        layers = list(shared) if shared is not None else [self.layer(), self.layer()]
        return oci_index_layout(self._path(".oci"), tag, platforms, layers, labels)
