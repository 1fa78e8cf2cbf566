"""Docker image manifest, schema 2."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import ParsedManifest, config_and_layers

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    return ParsedManifest(MEDIA_TYPE, blobs=config_and_layers(doc))
