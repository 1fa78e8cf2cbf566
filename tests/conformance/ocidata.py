"""Test content modelled on the conformance suite's generators (images, indexes, artifacts, referrers).

Every generator records what it makes in a :class:`DataSet`: blob bytes, manifest bytes (in push order),
tags, and the referrers list each subject is expected to have.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

MT_EXAMPLE1 = "application/vnd.example.oci.conformance.v1"
MT_EXAMPLE2 = "application/vnd.example.oci.conformance.v2"
MT_OCTET = "application/octet-stream"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_LAYER_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
CHUNK_MIN = 1024  # the suite never sends chunks smaller than this (unless the blob is smaller)
AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64"}


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def compact(doc: Any) -> bytes:
    """JSON the way Go's encoding/json writes it (no spaces)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def random_text(n: int = 16) -> str:
    return secrets.token_hex(n)


@dataclass
class Options:
    """The knobs of the suite's generators (``genWith...``)."""

    algorithm: str = "sha256"
    annotations: dict[str, str] | None = None
    unique_annotation: bool = False
    artifact_type: str = ""
    gzip: bool = True
    config_bytes: bytes | None = None
    config_media_type: str = ""
    layer_bytes: bytes | None = None
    layer_count: int = 2
    layer_media_type: str = ""
    platform: dict[str, str] | None = None
    platforms: list[dict[str, str] | None] | None = None
    set_data: bool = False
    extra_field: bool = False
    subject: dict[str, Any] | None = None
    tag: str = ""


@dataclass
class DataSet:
    """One data test: what gets pushed and what every read must return."""

    name: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    desc: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tag_param: bool = False  # push manifests by digest with ?tag= for their tags
    bad_digest: set[str] = field(default_factory=set)  # manifests whose bytes do not match their digest

    # -- blobs -----------------------------------------------------------------------------------
    def add_blob(self, data: bytes, opt: Options, media_type: str = MT_OCTET) -> str:
        dig = digest_of(data, opt.algorithm)
        self.blobs[dig] = data
        self.desc[dig] = self._descriptor(media_type, dig, data, opt)
        return dig

    def random_blob(self, size: int, opt: Options, media_type: str = MT_OCTET) -> str:
        return self.add_blob(os.urandom(size), opt, media_type)

    def layer(self, number: int, opt: Options) -> tuple[str, str]:
        """A one-file tar layer, gzip-compressed unless ``opt.gzip`` is off: (blob digest, diff id)."""
        raw = io.BytesIO()
        text = f"Conformance test file contents for file number {number}.\nLucky number {secrets.randbits(62)}\n"
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"./conformance-{number}.txt")
            info.size = len(text)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
        uncompressed = raw.getvalue()
        body = gzip.compress(uncompressed, mtime=0) if opt.gzip else uncompressed
        dig = self.add_blob(body, opt, MT_LAYER_GZ if opt.gzip else MT_LAYER)
        return dig, digest_of(uncompressed, opt.algorithm)

    def config(self, platform: dict[str, str], diff_ids: list[str], opt: Options) -> str:
        doc: dict[str, Any] = {
            "author": "OCI Conformance Test",
            **platform,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if opt.extra_field:
            doc[f"x-conformance-{random_text(4)}"] = random_text()
        return self.add_blob(compact(doc), opt, MT_CONFIG)

    # -- manifests -------------------------------------------------------------------------------
    def manifest(self, config: str, layers: list[dict[str, Any]], opt: Options) -> str:
        doc = self._document(MT_IMAGE, {"config": self.desc[config], "layers": layers}, opt)
        referrer_type = opt.artifact_type or self.desc[config]["mediaType"]
        return self._record(doc, MT_IMAGE, referrer_type, opt)

    def index(self, children: list[str], platforms: list[dict[str, str] | None], opt: Options) -> str:
        entries = []
        for child, platform in zip(children, platforms, strict=True):
            entry = dict(self.desc[child])
            if platform is not None:
                entry["platform"] = platform
            entries.append(entry)
        doc = self._document(MT_INDEX, {"manifests": entries}, opt)
        return self._record(doc, MT_INDEX, opt.artifact_type, opt)

    def _document(self, media_type: str, content: dict[str, Any], opt: Options) -> dict[str, Any]:
        """A manifest or index of ``content`` with the fields ``opt`` asks for, in the spec's order."""
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if opt.artifact_type:
            doc["artifactType"] = opt.artifact_type
        doc.update(content)
        if opt.subject is not None:
            doc["subject"] = opt.subject
        annotations = self._annotations(opt)
        if annotations is not None:
            doc["annotations"] = annotations
        if opt.extra_field:
            doc[f"x-conformance-{random_text(4)}"] = random_text()
        return doc

    def full_image(self, opt: Options) -> str:
        """An image (or artifact) with its config and layers (``genManifestFull``)."""
        blob_digests: list[str] = []
        diff_ids: list[str] = []
        for number in range(opt.layer_count):
            if not opt.layer_media_type or opt.layer_media_type.startswith("application/vnd.oci.image.layer.v1."):
                dig, diff_id = self.layer(number, opt)
            elif opt.layer_bytes is not None:
                dig = diff_id = self.add_blob(opt.layer_bytes, opt, opt.layer_media_type)
            else:
                dig = diff_id = self.random_blob(2048, opt, opt.layer_media_type)
            blob_digests.append(dig)
            diff_ids.append(diff_id)
        if not opt.config_media_type or opt.config_media_type == MT_CONFIG:
            config = self.config(opt.platform or AMD64, diff_ids, opt)
        else:
            config = self.add_blob(opt.config_bytes or b"", opt, opt.config_media_type)
        return self.manifest(config, [self.desc[d] for d in blob_digests], opt)

    def full_index(self, opt: Options) -> str:
        """An index of one image per platform (``genIndexFull``); the options apply to the images too."""
        platforms = opt.platforms if opt.platforms is not None else [AMD64, ARM64]
        children = [self.full_image(_with(opt, platform=p)) for p in platforms]
        return self.index(children, platforms, opt)

    # -- internals -------------------------------------------------------------------------------
    def _descriptor(self, media_type: str, dig: str, data: bytes, opt: Options) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": media_type, "digest": dig, "size": len(data)}
        if opt.set_data:
            desc["data"] = base64.b64encode(data).decode()
        return desc

    def _annotations(self, opt: Options) -> dict[str, str] | None:
        annotations = dict(opt.annotations) if opt.annotations else None
        if opt.unique_annotation:
            annotations = annotations or {}
            annotations[f"org.example.{random_text(8)}"] = random_text(8)
        return annotations

    def _record(self, doc: dict[str, Any], media_type: str, referrer_type: str, opt: Options) -> str:
        body = compact(doc)
        dig = digest_of(body, opt.algorithm)
        self.manifests[dig] = body
        self.order.append(dig)
        self.desc[dig] = self._descriptor(media_type, dig, body, opt)
        if opt.subject is not None:
            entry: dict[str, Any] = {"mediaType": media_type, "digest": dig, "size": len(body)}
            if referrer_type:
                entry["artifactType"] = referrer_type
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            self.referrers.setdefault(opt.subject["digest"], []).append(entry)
        if opt.tag:
            self.tags[opt.tag] = dig
        return dig


def _with(opt: Options, **changes: Any) -> Options:
    return Options(**{**opt.__dict__, **changes})


def options(**kwargs: Any) -> Options:
    return Options(**kwargs)


def artifact_options(**kwargs: Any) -> Options:
    """The suite's usual artifact: empty-JSON config, one layer of an example type, an annotation."""
    base: dict[str, Any] = {
        "artifact_type": MT_EXAMPLE1,
        "annotations": {"org.opencontainers.conformance": "hello conformance test"},
        "unique_annotation": True,
        "config_media_type": MT_EMPTY,
        "config_bytes": b"{}",
        "layer_count": 1,
        "layer_media_type": MT_EXAMPLE1,
    }
    base.update(kwargs)
    return Options(**base)


def build(name: str) -> DataSet:
    """The data set the suite calls ``name`` (its ``GenerateData``)."""
    ds = DataSet(name)
    if name == "image":
        ds.full_image(options(tag="image"))
    elif name == "image-uncompressed":
        ds.full_image(options(tag="image-uncompressed", gzip=False))
    elif name == "large-manifest":
        big = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
        ds.full_image(options(tag="large-manifest", annotations=big))
    elif name == "index":
        ds.full_index(options(tag="index"))
    elif name == "nested-index":
        first = ds.full_index(options())
        second = ds.full_index(options())
        ds.index([first, second], [None, None], options(tag="index-of-index"))
    elif name == "empty-index":
        ds.full_index(options(tag="index", platforms=[]))
    elif name == "artifact":
        ds.full_image(artifact_options(tag="artifact", annotations=None, unique_annotation=False))
    elif name == "artifact-index":
        ds.full_index(artifact_options(tag="artifact-index", annotations=None, unique_annotation=False))
    elif name == "artifact-without-layers":
        ds.full_image(artifact_options(tag="artifact-without-layers", annotations=None, unique_annotation=False,
                                       layer_bytes=b"{}", layer_media_type=MT_EMPTY))
    elif name == "artifacts-with-subject":
        subject = ds.desc[ds.full_image(options(tag="image"))]
        ds.full_image(options(subject=subject))
        ds.full_image(artifact_options(subject=subject, tag="tagged-artifact1"))
        ds.full_image(artifact_options(subject=subject, tag="tagged-artifact2", artifact_type=MT_EXAMPLE2,
                                       layer_media_type=MT_OCTET))
    elif name == "index-with-subject":
        subject = ds.desc[ds.full_index(options(tag="index"))]
        ds.full_index(artifact_options(subject=subject, tag="tagged-artifact"))
    elif name == "missing-subject":
        missing = {"mediaType": MT_IMAGE, "size": 123, "digest": digest_of(b"missing content")}
        ds.full_image(artifact_options(subject=missing, tag="tagged-artifact"))
    elif name == "data-field":
        ds.full_image(options(tag="data-field", set_data=True))
    elif name == "non-distributable-layers":
        _nondistributable(ds)
    elif name == "custom-fields":
        ds.full_index(options(tag="custom-fields", extra_field=True))
    elif name == "no-layers":
        ds.full_image(options(tag="no-layers", layer_count=0))
    elif name == "sparse":
        _sparse(ds)
    elif name == "sha512":
        ds.full_index(options(algorithm="sha512"))
    elif name in ("tag-param-sha256", "tag-param-sha512"):
        algorithm = name.rsplit("-", 1)[1]
        ds.full_index(options(tag=name, algorithm=algorithm))
        for i, dig in enumerate(ds.order):
            ds.tags[f"{name}-{i}"] = dig
        ds.tag_param = True
    elif name == "bad-digest-image":
        dig = ds.full_image(options())
        ds.manifests[dig] += b"  "  # whitespace: the bytes no longer match the digest
        ds.bad_digest.add(dig)
    else:
        raise ValueError(name)
    return ds


def _nondistributable(ds: DataSet) -> None:
    """Two foreign layers (never pushed, with URLs) and one normal layer."""
    layers = []
    diff_ids = []
    for media_type, size in ((MT_LAYER_ND_GZ, 123456), (MT_LAYER_ND, 12345)):
        dig = digest_of(os.urandom(256))
        layers.append({"mediaType": media_type, "digest": dig, "size": size,
                       "urls": [f"https://store.example.com/blobs/sha256/{dig.split(':', 1)[1]}"]})
        diff_ids.append(dig)
    normal, diff_id = ds.layer(1, options())
    layers.append(ds.desc[normal])
    diff_ids.append(diff_id)
    config = ds.config(AMD64, diff_ids, options())
    ds.manifest(config, layers, options(tag="non-distributable-image"))


def _sparse(ds: DataSet) -> None:
    """An image missing a layer, and an index naming a manifest that was never pushed."""
    ds.full_image(options(tag="sparse-image"))
    for dig, desc in list(ds.desc.items()):
        if dig in ds.blobs and desc["mediaType"].startswith("application/vnd.oci.image.layer.v1."):
            del ds.blobs[dig]
            break
    image = ds.full_image(options(platform=AMD64))
    missing = digest_of(os.urandom(1024))
    ds.desc[missing] = {"mediaType": MT_IMAGE, "digest": missing, "size": 1024}
    ds.index([image, missing], [AMD64, ARM64], options(tag="sparse-index"))
