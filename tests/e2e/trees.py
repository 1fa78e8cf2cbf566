"""Large registries written straight to disk in Distribution's layout, for the tests that need thousands of
repositories or tags (pushing them through the API would take minutes).

Every repository holds one image: its own config (with a description label) and one layer shared from a
small pool, tagged ``latest``; one repository may hold thousands of tags besides.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_POOL = 32


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TreeWriter:
    def __init__(self, root: Path) -> None:
        self.v2 = root / "docker" / "registry" / "v2"
        self.pool = [self.blob(f"shared layer {i}".encode() * 64) for i in range(LAYER_POOL)]

    def blob(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` as a blob; its hex digest and size."""
        hex_ = hashlib.sha256(data).hexdigest()
        _write(self.v2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data", data)
        return hex_, len(data)

    def link(self, name: str, relative: str, hex_: str) -> None:
        _write(self.v2 / "repositories" / name / relative / "sha256" / hex_ / "link", f"sha256:{hex_}".encode())

    def tag(self, name: str, tag: str, hex_: str) -> None:
        tag_dir = self.v2 / "repositories" / name / "_manifests" / "tags" / tag
        _write(tag_dir / "current" / "link", f"sha256:{hex_}".encode())
        _write(tag_dir / "index" / "sha256" / hex_ / "link", f"sha256:{hex_}".encode())

    def image(self, name: str, number: int) -> str:
        """Push one image into ``name`` (tagged ``latest``); the manifest's hex digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {
            "Labels": {"org.opencontainers.image.description": f"image {number} of {name}"}}}).encode()
        config_hex, config_size = self.blob(config)
        layer_hex, layer_size = self.pool[number % len(self.pool)]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config_hex}", "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": f"sha256:{layer_hex}", "size": layer_size}],
        }).encode()
        manifest_hex, _ = self.blob(manifest)
        for hex_ in (config_hex, layer_hex):
            self.link(name, "_layers", hex_)
        self.link(name, "_manifests/revisions", manifest_hex)
        self.tag(name, "latest", manifest_hex)
        return manifest_hex


def write_registry(root: Path, repositories: int, namespaces: int = 20) -> list[str]:
    """``repositories`` repositories named ``nsK/repoN``; their names, sorted."""
    writer = TreeWriter(root)
    names = [f"ns{n % namespaces}/repo{n}" for n in range(repositories)]
    for number, name in enumerate(names):
        writer.image(name, number)
    return sorted(names)


def write_tags(root: Path, name: str, count: int) -> list[str]:
    """A repository ``name`` with ``count`` tags (``latest`` among them) on one image; the tags, sorted."""
    writer = TreeWriter(root)
    manifest = writer.image(name, 0)
    tags = ["latest", *(f"t{n:05d}" for n in range(count - 1))]
    for tag in tags[1:]:
        writer.tag(name, tag, manifest)
    return sorted(tags)
