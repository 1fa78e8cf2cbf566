"""Manifest parsing by media type (registry/mediatypes/)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from registry.mediatypes import MAX_DEPTH, InvalidManifest, detect_media_type, nesting_within, parse


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


MAX_BODY = 4 << 20
HOSTILE_BODIES = {
    # issue 24: an unterminated string of escaped quotes made the old check backtrack (64 KB: ~30 s)
    "escaped quotes, 64 KB": b'"' + b'\\"' * 32_000,
    "escaped quotes, 4 MiB": b'"' + b'\\"' * (MAX_BODY // 2 - 1),
    "strings and brackets alternating": b'"["[' * (MAX_BODY // 4),
    "quotes": b'["' + b'a"' * (MAX_BODY // 2 - 1),
    "flat brackets": b"[" + b"[]," * (MAX_BODY // 3 - 1) + b"]",
    "deep brackets": b"[" * (MAX_BODY // 2) + b"]" * (MAX_BODY // 2),
    "blocks just within the limit": (b"[" * 64 + b"]" * 64) * (MAX_BODY // 128),
    "backslashes": b'"' + b"\\" * (MAX_BODY - 1),
}


def test_the_nesting_check_is_linear_on_hostile_bodies() -> None:
    """Each body up to the size limit is judged in one pass: the request must not hold a CPU for
    minutes (the quadratic check took ~30 s on the first body, hours on the 4 MiB ones)."""
    started = time.monotonic()
    verdicts = {name: nesting_within(body, MAX_DEPTH) for name, body in HOSTILE_BODIES.items()}
    assert time.monotonic() - started < 20  # a generous fault bound: ~1-2 s on a loaded 2-core machine
    assert verdicts == {**{name: True for name in HOSTILE_BODIES}, "strings and brackets alternating": False,
                        "deep brackets": False}
    for body in HOSTILE_BODIES.values():
        with pytest.raises(InvalidManifest):
            parse(body, "application/vnd.oci.image.manifest.v1+json")
