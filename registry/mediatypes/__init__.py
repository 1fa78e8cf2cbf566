"""Manifest media types: one module per type, chosen by Content-Type or the document's own mediaType; parsing
and validation only (errors are ``InvalidManifest``; the HTTP layer gives them their status)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from registry.mediatypes import docker_manifest_list, docker_schema2, oci_index, oci_manifest
from registry.mediatypes.descriptor import (
    Descriptor,
    InvalidManifest,
    ParsedManifest,
    check_media_type_field,
    check_schema_version,
    invalid,
)
from storage.digests import Digest

MAX_MANIFEST_SIZE = 4 << 20
MAX_DEPTH = 64  # a manifest nests 4-5 levels; the JSON parser recurses once per level
NOT_MARKS = bytes(b for b in range(256) if b not in b'[]{}"')  # what nesting_within drops first
STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
DEPTH_CHUNK = 1 << 16  # brackets summed per step, so a document deep early stops early
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
PARSERS: dict[str, Callable[[dict[str, Any]], ParsedManifest]] = {
    module.MEDIA_TYPE: module.parse
    for module in (docker_schema2, docker_manifest_list, oci_manifest, oci_index)
}
INDEX_TYPES = (docker_manifest_list.MEDIA_TYPE, oci_index.MEDIA_TYPE)
GENERIC_TYPES = ("", "application/json", "application/octet-stream")

__all__ = [
    "Descriptor", "InvalidManifest", "ParsedManifest", "parse", "parse_stored", "detect_media_type",
    "referrer_descriptor",
    "MAX_MANIFEST_SIZE",
]


def parse(content: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a pushed manifest (raises InvalidManifest); the Content-Type decides its type, else its
    ``mediaType`` field."""
    if len(content) > MAX_MANIFEST_SIZE:
        raise invalid(f"manifest larger than {MAX_MANIFEST_SIZE} bytes")
    if not nesting_within(content, MAX_DEPTH):
        raise invalid(f"manifest nested deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise invalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise invalid("manifest must be a JSON object")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in GENERIC_TYPES:
        media_type = guess(doc)
    if media_type in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    parser = PARSERS.get(media_type)
    if parser is None:
        raise invalid(f"unsupported manifest media type {media_type!r}")
    check_schema_version(doc)
    check_media_type_field(doc, media_type)
    return parser(doc)


def nesting_within(content: bytes, limit: int) -> bool:
    """False when arrays and objects nest deeper than ``limit``.

    Checked before parsing: the JSON parser recurses once per level, and what reads the document
    afterwards (pretty-printing, templates) may too.  Linear, in C: escapes go first (``\\\\`` pairs,
    then ``\\"``, as a JSON string reads them from the left), then everything but quotes and brackets;
    of what remains, every other piece between quotes is a string.  Adjacent quotes can go as a pair
    either way: they close one string and open the next with no bracket between (the two strings merge,
    their brackets stay inside), or enclose a string without brackets.  The depth is then a running sum
    of +1/-1.  (A regex for strings backtracked: an unterminated string of 32,000 escaped quotes took
    ~30 s.)  Bytes that are not JSON (a backslash outside a string) may be judged either way: the parser
    refuses them before it gets deep.
    """
    bare = content.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = bare.translate(None, NOT_MARKS).replace(b'""', b"")
    brackets = b"".join(marks.split(b'"')[::2])
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return True  # every manifest: a few dozen brackets
    steps = memoryview(brackets.translate(STEPS)).cast("b")
    depth = 0
    for start in range(0, len(steps), DEPTH_CHUNK):
        running = list(itertools.accumulate(steps[start : start + DEPTH_CHUNK], initial=depth))
        if max(running) > limit:
            return False
        depth = running[-1]
    return True


def guess(doc: dict[str, Any]) -> str:
    """The type of a document given without a useful Content-Type (as Distribution does)."""
    declared = doc.get("mediaType")
    if isinstance(declared, str):
        return declared
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_TYPES[1]
    if "manifests" in doc:
        return oci_index.MEDIA_TYPE
    return oci_manifest.MEDIA_TYPE


def detect_media_type(content: bytes) -> str:
    """The Content-Type to serve a stored manifest with."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):  # stored by another tool: anything goes
        return "application/octet-stream"
    return guess(doc) if isinstance(doc, dict) else "application/octet-stream"


def parse_stored(content: bytes) -> ParsedManifest:
    """A stored manifest, of the type it declares (raises InvalidManifest)."""
    return parse(content, detect_media_type(content))


def referrer_descriptor(manifest: ParsedManifest, digest: Digest, size: int) -> dict[str, Any]:
    """How a manifest with a ``subject`` appears in its subject's referrers list."""
    descriptor: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(digest), "size": size}
    if manifest.artifact_type:
        descriptor["artifactType"] = manifest.artifact_type
    if manifest.annotations:
        descriptor["annotations"] = manifest.annotations
    return descriptor


def describe_referrer(content: bytes, digest: Digest) -> tuple[Digest, dict[str, Any]] | None:
    """A stored manifest's subject and referrer descriptor; None without a subject (or when unreadable)."""
    try:
        manifest = parse_stored(content)
    except InvalidManifest:
        return None
    if manifest.subject is None:
        return None
    return manifest.subject.digest, referrer_descriptor(manifest, digest, len(content))
