"""Manifest parsing by media type (registry/mediatypes/)."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry.mediatypes import InvalidManifest, detect_media_type, parse


def descriptor(data: bytes, media_type: str = "application/vnd.oci.image.layer.v1.tar") -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_manifest_parsing_by_type() -> None:
    oci = {"schemaVersion": 2, "config": descriptor(b"c", "application/vnd.example+json"),
           "layers": [descriptor(b"l")], "subject": descriptor(b"s", "application/vnd.oci.image.manifest.v1+json")}
    parsed = parse(json.dumps(oci).encode(), "application/vnd.oci.image.manifest.v1+json")
    assert len(parsed.blobs) == 2 and parsed.subject is not None
    assert parsed.artifact_type == "application/vnd.example+json"  # the config type, as the spec says
    # without a Content-Type the document decides, as in Distribution
    assert parse(json.dumps(oci).encode(), None).media_type == "application/vnd.oci.image.manifest.v1+json"
    index = {"schemaVersion": 2, "manifests": [descriptor(b"m", "application/vnd.oci.image.manifest.v1+json")]}
    assert detect_media_type(json.dumps(index).encode()) == "application/vnd.oci.image.index.v1+json"
    with pytest.raises(InvalidManifest, match="does not match"):
        parse(json.dumps({**oci, "mediaType": "application/vnd.oci.image.index.v1+json"}).encode(),
              "application/vnd.oci.image.manifest.v1+json")
