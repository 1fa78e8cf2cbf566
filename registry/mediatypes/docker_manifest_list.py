"""Docker manifest list (multi-platform)."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import (
    ParsedManifest,
    check_media_type_field,
    check_schema_version,
    descriptor_list,
)

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    check_schema_version(doc)
    check_media_type_field(doc, MEDIA_TYPE)
    return ParsedManifest(MEDIA_TYPE, children=descriptor_list(doc, "manifests", required=True))
