"""OCI image manifest, including artifacts (any config media type or ``artifactType``) and ``subject``."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import (
    ParsedManifest,
    check_annotations,
    config_and_layers,
    optional_artifact_type,
    optional_subject,
)

MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    blobs = config_and_layers(doc)
    return ParsedManifest(
        MEDIA_TYPE,
        blobs=blobs,
        subject=optional_subject(doc),
        artifact_type=optional_artifact_type(doc) or blobs[0].media_type,  # the spec's fallback: config type
        annotations=check_annotations(doc.get("annotations"), "annotations"),
    )
