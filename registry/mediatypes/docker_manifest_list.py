"""Docker manifest list (multi-platform)."""

from __future__ import annotations

from typing import Any

from registry.mediatypes.descriptor import ParsedManifest, descriptor_list

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"


def parse(doc: dict[str, Any]) -> ParsedManifest:
    return ParsedManifest(MEDIA_TYPE, children=descriptor_list(doc, "manifests", required=True))
