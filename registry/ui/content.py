"""What the web UI shows of repositories and manifests, read through the registry's stores and parsers.

Manifests are parsed by ``registry.mediatypes`` (the parser the API validates pushes with); what a
digest summarises to (platforms, size, labels) never changes, so summaries are cached by digest.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from registry import offload
from registry.errors import RegistryError
from registry.instance import Registry
from registry.mediatypes import (
    INDEX_TYPES,
    InvalidManifest,
    ParsedManifest,
    detect_media_type,
    parse,
    parse_stored,
)
from registry.names import digest_param, is_tag
from registry.ui.image_config import ImageConfig, read_config
from storage.blobs import BlobUnknown
from storage.digests import Digest, parse_digest
from storage.driver import PathNotFound
from storage.manifests import ManifestUnknown, TagUnknown

CACHE_ENTRIES = 8192
MAX_CONFIG_BYTES = 4 << 20
CONCURRENCY = 16  # storage reads in flight for one page
# tag rows read at once: cached reads answer without suspending, so one gather over 10,000 tags would
# hold the event loop for a second
ROWS_AT_ONCE = 64
DESCRIPTION_LABEL = "org.opencontainers.image.description"


async def resolve(registry: Registry, name: str, reference: str) -> Digest:
    """The digest a tag or digest names in storage (raises MANIFEST_UNKNOWN)."""
    if is_tag(reference):
        try:
            return await registry.tags.resolve(name, reference)
        except TagUnknown:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"tag": reference}) from None
    return digest_param(reference)


async def load(registry: Registry, name: str, digest: Digest) -> bytes:
    """A stored manifest of the repository (raises MANIFEST_UNKNOWN)."""
    try:
        return await registry.manifests.get(name, digest)
    except ManifestUnknown:
        raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(digest)}) from None


@dataclass(frozen=True, slots=True)
class Summary:
    """One manifest (an index with its children) in a line: for tag and repository lists."""

    media_type: str
    size: int  # config and layers, over the children of an index (each blob once)
    blobs: frozenset[tuple[str, int]]  # digest and size of every blob, to add repository sizes up
    platforms: tuple[str, ...]
    artifact_type: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    problem: str | None = None  # why part of it could not be read


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    digest: str
    pushed: float | None
    summary: Summary


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    tags: int
    size: int
    pushed: float | None


@dataclass(slots=True)
class Layer:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...]


@dataclass(slots=True)
class Child:
    digest: str
    media_type: str
    size: int
    platform: str
    summary: Summary | None


@dataclass(slots=True)
class Detail:
    """Everything the manifest page shows."""

    digest: str
    media_type: str
    size: int
    raw: str
    tags: list[str]
    manifest: ParsedManifest | None
    config_descriptor: Layer | None = None
    layers: list[Layer] = field(default_factory=list)
    config: ImageConfig | None = None
    children: list[Child] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: str | None = None
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()
    problem: str | None = None


def platform_text(platform: dict[str, Any] | None) -> str:
    if not platform:
        return ""
    parts = [str(platform.get(k) or "") for k in ("os", "architecture", "variant")]
    return "/".join(p for p in parts if p)


class Inspector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._summaries: OrderedDict[Digest, Summary] = OrderedDict()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    # --- lists -----------------------------------------------------------------------------------------

    async def tag_rows(self, name: str, limit: int | None = None) -> list[TagRow]:
        """Every tag of the repository (the first ``limit`` in lexical order) with what it points at; []
        for a repository without tags."""
        try:
            if limit is None:
                tags = await self.registry.tags.list(name)
            else:
                tags, _ = await self.registry.tags.page(name, None, limit)
        except PathNotFound:
            return []
        rows: list[TagRow | None] = []
        for start in range(0, len(tags), ROWS_AT_ONCE):  # between two batches the event loop gets a turn
            rows += await asyncio.gather(*(self._tag_row(name, tag) for tag in tags[start : start + ROWS_AT_ONCE]))
        return [row for row in rows if row is not None]

    async def _tag_row(self, name: str, tag: str) -> TagRow | None:
        async with self._gate:
            try:
                digest = await self.registry.tags.resolve(name, tag)
            except TagUnknown:
                return None  # untagged meanwhile
            pushed = await self.registry.tags.pushed_at(name, tag)
        return TagRow(tag, str(digest), pushed, await self.summary(name, digest))

    async def repository_row(self, name: str) -> RepositoryRow:
        rows = await self.tag_rows(name)
        blobs = frozenset().union(*(row.summary.blobs for row in rows)) if rows else frozenset()
        pushed = max((row.pushed for row in rows if row.pushed is not None), default=None)
        return RepositoryRow(name, len(rows), sum(size for _, size in blobs), pushed)

    async def description(self, name: str) -> str:
        """The ``org.opencontainers.image.description`` label of ``latest`` (else of the first tag)."""
        try:
            tags = await self.registry.tags.list(name)
        except PathNotFound:
            return ""
        tag = "latest" if "latest" in tags else (tags[0] if tags else None)
        row = await self._tag_row(name, tag) if tag else None
        return row.summary.labels.get(DESCRIPTION_LABEL, "") if row else ""

    async def repository_rows(self, names: list[str]) -> list[RepositoryRow]:
        return list(await asyncio.gather(*(self.repository_row(name) for name in names)))

    # --- one manifest ----------------------------------------------------------------------------------

    async def summary(self, name: str, digest: Digest, depth: int = 0) -> Summary:
        cached = self._summaries.get(digest)
        if cached is not None:
            self._summaries.move_to_end(digest)
            return cached
        summary = await self._summarize(name, digest, depth)
        if summary.problem is None:  # a missing child may still arrive: do not remember the gap
            self._summaries[digest] = summary
            if len(self._summaries) > CACHE_ENTRIES:
                self._summaries.popitem(last=False)
        return summary

    async def _summarize(self, name: str, digest: Digest, depth: int) -> Summary:
        try:
            async with self._gate:
                content = await load(self.registry, name, digest)
            manifest = await offload.sized(len(content), parse_stored, content)
        except RegistryError as e:
            return Summary("", 0, frozenset(), (), problem=e.message or e.code)
        except InvalidManifest as e:
            return Summary("", 0, frozenset(), (), problem=e.message)
        if manifest.media_type in INDEX_TYPES:
            if depth > 0:
                return Summary(manifest.media_type, 0, frozenset(), (), problem="nested index")
            children = await asyncio.gather(*(self.summary(name, c.digest, depth + 1) for c in manifest.children))
            blobs = frozenset().union(*(c.blobs for c in children)) if children else frozenset()
            platforms = tuple(
                platform_text(c.platform) or "/".join(s.platforms) for c, s in zip(manifest.children, children,
                                                                                   strict=True)
            )
            problems = [s.problem for s in children if s.problem]
            labels = {k: v for s in children for k, v in s.labels.items()}  # an index is searched by its images'
            return Summary(manifest.media_type, sum(size for _, size in blobs), blobs,
                           tuple(p for p in platforms if p), manifest.artifact_type, labels,
                           problem=problems[0] if problems else None)
        blobs = frozenset((str(b.digest), b.size) for b in manifest.blobs)
        config = await self.image_config(manifest)
        return Summary(
            manifest.media_type, sum(size for _, size in blobs), blobs,
            (config.platform,) if config and config.platform else (),
            manifest.artifact_type if not is_image_config(manifest) else None,
            dict(config.labels) if config else {}, config.created if config else None,
        )

    async def image_config(self, manifest: ParsedManifest) -> ImageConfig | None:
        """The image config, read field by field (``image_config.read_config``); None for artifacts and
        for configs that are missing or too large to read."""
        if not manifest.blobs or not is_image_config(manifest):
            return None
        descriptor = manifest.blobs[0]
        if descriptor.size > MAX_CONFIG_BYTES:
            return None
        try:
            async with self._gate:
                raw = await self.registry.blobs.get(descriptor.digest)
        except BlobUnknown:
            return None
        return await offload.sized(len(raw), config_of, raw)

    async def detail(self, name: str, digest: Digest) -> Detail:
        """Raises RegistryError (MANIFEST_UNKNOWN) when the repository has no such manifest."""
        content = await load(self.registry, name, digest)
        media_type = await offload.sized(len(content), detect_media_type, content)
        tags = await self.registry.tags.tags_of(name, digest)
        raw = await offload.sized(len(content), pretty, content)
        detail = Detail(str(digest), media_type, len(content), raw, tags, None)
        try:
            manifest = await offload.sized(len(content), parse, content, media_type)
        except InvalidManifest as e:
            detail.problem = e.message
            return detail
        detail.manifest = manifest
        detail.media_type = manifest.media_type
        detail.annotations = dict(manifest.annotations or {})
        detail.artifact_type = manifest.artifact_type
        detail.subject = str(manifest.subject.digest) if manifest.subject else None
        if manifest.media_type in INDEX_TYPES:
            summaries = await asyncio.gather(*(self.summary(name, c.digest, 1) for c in manifest.children))
            detail.children = [
                Child(str(c.digest), c.media_type, c.size, platform_text(c.platform) or "/".join(s.platforms),
                      s if not s.problem else None)
                for c, s in zip(manifest.children, summaries, strict=True)
            ]
            detail.platforms = tuple(c.platform for c in detail.children if c.platform)
        elif manifest.blobs:
            config, *layers = manifest.blobs
            detail.config_descriptor = Layer(config.media_type, str(config.digest), config.size, config.urls)
            detail.layers = [Layer(b.media_type, str(b.digest), b.size, b.urls) for b in layers]
            detail.config = await self.image_config(manifest)
            detail.platforms = (detail.config.platform,) if detail.config and detail.config.platform else ()
            if is_image_config(manifest):
                detail.artifact_type = None
        for referrer in await self.registry.referrers.list(name, digest):
            kind = referrer.get("artifactType") or referrer.get("mediaType") or "unknown"
            detail.referrers.setdefault(kind, []).append(referrer)
        return detail


IMAGE_CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")


def is_image_config(manifest: ParsedManifest) -> bool:
    return bool(manifest.blobs) and manifest.blobs[0].media_type in IMAGE_CONFIG_TYPES


def config_of(raw: bytes) -> ImageConfig:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ImageConfig(problems=("the config is not valid JSON",))
    return read_config(doc)


def pretty(content: bytes) -> str:
    try:
        return json.dumps(json.loads(content), indent=2)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return content.decode(errors="replace")


def digest_or_none(text: str) -> Digest | None:
    try:
        return parse_digest(text)
    except ValueError:
        return None
