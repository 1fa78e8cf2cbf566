"""Content of the classic (v1.1.0, ``go test``) suite: configs/manifests per workflow and referrer artifacts."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.ocidata import MT_CONFIG, MT_EMPTY, MT_IMAGE, MT_INDEX, MT_LAYER_GZ, digest_of

TAG_NAME = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST = b"blablabla"
DUMMY_DIGEST = digest_of(b"hello world")
ANNOTATION_KEY = "org.opencontainers.conformance.test"
ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
WORKFLOWS = 5  # pull, push, discovery, management, and the referrers subject


def indented(doc: Any) -> bytes:
    """Go's json.MarshalIndent(v, "", "\\t")."""
    return json.dumps(doc, indent="\t").encode()


@dataclass
class Blob:
    content: bytes
    digest: str = ""

    def __post_init__(self) -> None:
        self.digest = digest_of(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


def _layer() -> bytes:
    raw = io.BytesIO()
    text = b"you bothered to find out what was in here. Congratulations!\n"
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("test.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return gzip.compress(raw.getvalue(), mtime=0)


def _descriptor(media_type: str, blob: Blob, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": blob.digest, "size": len(blob.content), **extra}


def _config_descriptor(config: Blob) -> dict[str, Any]:
    """The config descriptor carries ``data`` and an unknown field, as the suite's does."""
    return _descriptor(MT_CONFIG, config, data=base64.b64encode(config.content).decode(),
                       newUnspecifiedField=base64.b64encode(b"hello world").decode())


@dataclass
class Classic:
    """Everything ``setup.go`` builds in ``init()``."""

    layer: Blob = field(default_factory=lambda: Blob(_layer()))
    configs: list[Blob] = field(default_factory=list)
    manifests: list[Blob] = field(default_factory=list)
    blob_a: Blob = field(default_factory=lambda: Blob(os.urandom(42)))
    blob_b: Blob = field(default_factory=lambda: Blob(os.urandom(42)))
    empty_layer_manifest: Blob = field(default_factory=lambda: Blob(b""))
    empty_json: Blob = field(default_factory=lambda: Blob(b"{}"))
    ref_blob_a: Blob = field(default_factory=lambda: Blob(b"NHL Peanut Butter on my NHL bagel"))
    ref_blob_b: Blob = field(default_factory=lambda: Blob(b"NBA Strawberry Jam on my NBA croissant"))
    refs: dict[str, Blob] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layer_desc = {**_descriptor(MT_LAYER_GZ, self.layer), "data": None, "newUnspecifiedField": None}
        for _ in range(WORKFLOWS):
            config = Blob(indented({"author": secrets.token_urlsafe(12), "architecture": "amd64", "os": "linux",
                                    "rootfs": {"type": "layers", "diff_ids": []}}))
            self.configs.append(config)
            self.manifests.append(Blob(indented({"schemaVersion": 2, "mediaType": MT_IMAGE,
                                                 "config": _config_descriptor(config), "layers": [layer_desc]})))
        self.empty_layer_manifest = Blob(indented({"schemaVersion": 2, "config": _config_descriptor(self.configs[1]),
                                                   "layers": []}))
        self.set_chunked_blob(42)
        subject = _descriptor(MT_IMAGE, self.manifests[4])
        missing_subject = _descriptor(MT_IMAGE, self.manifests[3])
        empty = _descriptor(MT_EMPTY, self.empty_json)
        self._ref("config a", {"config": _descriptor(ARTIFACT_TYPE_A, self.ref_blob_a), "subject": subject,
                               "layers": [empty]})
        self._ref("config b", {"config": _descriptor(ARTIFACT_TYPE_B, self.ref_blob_b), "subject": subject,
                               "layers": [empty]})
        self._ref("layer a", {"artifactType": ARTIFACT_TYPE_A, "config": empty, "subject": subject,
                              "layers": [_descriptor(ARTIFACT_TYPE_A, self.ref_blob_a)]})
        self._ref("layer b", {"artifactType": ARTIFACT_TYPE_B, "config": empty, "subject": subject,
                              "layers": [_descriptor(ARTIFACT_TYPE_B, self.ref_blob_b)]})
        self._ref("layer c", {"artifactType": ARTIFACT_TYPE_B, "config": empty, "subject": missing_subject,
                              "layers": [_descriptor(ARTIFACT_TYPE_B, self.ref_blob_b)]}, annotate=False)
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "artifactType": ARTIFACT_TYPE_INDEX,
                 "manifests": [_descriptor(MT_IMAGE, self.refs["config a"]),
                               _descriptor(MT_IMAGE, self.refs["layer a"])],
                 "subject": subject, "annotations": {ANNOTATION_KEY: "test index"}}
        self.refs["index"] = Blob(indented(index))
        self.annotations[self.refs["index"].digest] = "test index"

    def _ref(self, name: str, parts: dict[str, Any], annotate: bool = True) -> None:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_IMAGE}
        doc.update(parts)
        if annotate:
            doc["annotations"] = {ANNOTATION_KEY: f"test {name}"}
        self.refs[name] = Blob(indented(doc))
        if annotate:
            self.annotations[self.refs[name].digest] = f"test {name}"

    def set_chunked_blob(self, size: int) -> None:
        """``setupChunkedBlob``: chunk 1 is the first size/2+1 bytes, chunk 2 the rest."""
        self.blob_b = Blob(os.urandom(size))
        cut = size // 2 + 1
        self.chunk1, self.chunk2 = self.blob_b.content[:cut], self.blob_b.content[cut:]
        self.chunk1_range = f"0-{cut - 1}"
        self.chunk2_range = f"{cut}-{size - 1}"


CLASSIC = Classic()  # setup.go's init(): one set of content for every workflow
