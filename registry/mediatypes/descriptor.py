"""Descriptor and document checks shared by every manifest media type."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from storage.digests import Digest, InvalidDigest, parse_digest

MAX_SIZE = 2**63 - 1  # sizes are int64 in the spec and in every client
MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None


@dataclass(slots=True)
class ParsedManifest:
    """What the registry needs to know of a manifest to verify, index and serve it."""

    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


class InvalidManifest(ValueError):
    """The document is no valid manifest of its type (the HTTP layer answers MANIFEST_INVALID)."""

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def invalid(message: str, detail: object = None) -> InvalidManifest:
    return InvalidManifest(message, detail)


def descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise invalid(f"{where}: descriptor must be an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not MEDIA_TYPE_RE.fullmatch(media_type):
        raise invalid(f"{where}.mediaType: missing or malformed media type")
    digest_text = value.get("digest")
    if not isinstance(digest_text, str):
        raise invalid(f"{where}.digest: missing")
    try:
        digest = parse_digest(digest_text)
    except InvalidDigest as e:
        raise invalid(f"{where}.digest: {e}") from None
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise invalid(f"{where}.size: must be an integer from 0 to {MAX_SIZE}")
    urls = value.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise invalid(f"{where}.urls: must be a list of strings")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise invalid(f"{where}.platform: must be an object")
    check_annotations(value.get("annotations"), f"{where}.annotations")
    return Descriptor(media_type, digest, size, tuple(urls), platform)


def descriptor_list(doc: dict[str, Any], key: str, required: bool) -> list[Descriptor]:
    value = doc.get(key)
    if value is None:
        if required:
            raise invalid(f"{key}: missing")
        return []
    if not isinstance(value, list):
        raise invalid(f"{key}: must be a list")
    return [descriptor(item, f"{key}[{i}]") for i, item in enumerate(value)]


def check_annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid(f"{where}: must be a map of strings")
    return value


def check_schema_version(doc: dict[str, Any]) -> None:
    if doc.get("schemaVersion") != 2:
        raise invalid("schemaVersion: must be 2")


def check_media_type_field(doc: dict[str, Any], expected: str) -> None:
    value = doc.get("mediaType")
    if value is not None and value != expected:
        raise invalid(f"mediaType: {value!r} does not match the manifest's type {expected!r}")


def optional_subject(doc: dict[str, Any]) -> Descriptor | None:
    value = doc.get("subject")
    return None if value is None else descriptor(value, "subject")


def optional_artifact_type(doc: dict[str, Any]) -> str | None:
    value = doc.get("artifactType")
    if value is None:
        return None
    if not isinstance(value, str) or not MEDIA_TYPE_RE.fullmatch(value):
        raise invalid("artifactType: malformed media type")
    return value


def config_and_layers(doc: dict[str, Any]) -> list[Descriptor]:
    """An image manifest's blobs: the config first, then the layers."""
    if "config" not in doc:
        raise invalid("config: missing")
    return [descriptor(doc["config"], "config"), *descriptor_list(doc, "layers", required=True)]
