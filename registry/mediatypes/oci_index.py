"""OCI image index (multi-platform, index of indexes, or an artifact with ``subject``)."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import (
    ParsedManifest,
    check_annotations,
    descriptor_list,
    optional_artifact_type,
    optional_subject,
)

MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    return ParsedManifest(
        MEDIA_TYPE,
        children=descriptor_list(doc, "manifests", required=True),
        subject=optional_subject(doc),
        artifact_type=optional_artifact_type(doc),
        annotations=check_annotations(doc.get("annotations"), "annotations"),
    )
