"""OCI image manifest, including artifacts (any config media type or ``artifactType``) and ``subject``."""

from __future__ import annotations

from typing import Any

from registry.manifests.descriptor import (
    ParsedManifest,
    check_annotations,
    check_media_type_field,
    check_schema_version,
    descriptor,
    descriptor_list,
    invalid,
    optional_artifact_type,
    optional_subject,
)

MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    check_schema_version(doc)
    check_media_type_field(doc, MEDIA_TYPE)
    if "config" not in doc:
        raise invalid("config: missing")
    config = descriptor(doc["config"], "config")
    layers = descriptor_list(doc, "layers", required=True)
    artifact_type = optional_artifact_type(doc) or config.media_type
    return ParsedManifest(
        MEDIA_TYPE,
        blobs=[config, *layers],
        subject=optional_subject(doc),
        artifact_type=artifact_type,
        annotations=check_annotations(doc.get("annotations"), "annotations"),
    )
