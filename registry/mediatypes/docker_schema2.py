"""Docker image manifest, schema 2."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import (
    ParsedManifest,
    check_media_type_field,
    check_schema_version,
    config_and_layers,
)

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    check_schema_version(doc)
    check_media_type_field(doc, MEDIA_TYPE)
    return ParsedManifest(MEDIA_TYPE, blobs=config_and_layers(doc))
