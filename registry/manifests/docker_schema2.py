"""Docker image manifest, schema 2."""

from __future__ import annotations

from typing import Any

from registry.manifests.descriptor import (
    ParsedManifest,
    check_media_type_field,
    check_schema_version,
    descriptor,
    descriptor_list,
    invalid,
)

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    check_schema_version(doc)
    check_media_type_field(doc, MEDIA_TYPE)
    if "config" not in doc:
        raise invalid("config: missing")
    config = descriptor(doc["config"], "config")
    layers = descriptor_list(doc, "layers", required=True)
    return ParsedManifest(MEDIA_TYPE, blobs=[config, *layers])
