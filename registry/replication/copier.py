"""Copies one item from a source side to a destination side the way a registry would, not a client:

* a tag's manifest goes byte for byte (its digest stays), after everything it names: an index's child
  manifests (each after its own blobs), an image's config and layers; what the destination has already
  (a HEAD) is not sent again;
* a blob the destination holds in another repository this execution wrote to is mounted there
  (cross-repository mount), and two items needing one blob at once send it once: the second waits for
  the first and mounts;
* blobs stream from the source to the destination (never whole in memory), ``concurrency`` at a time,
  within the rule's bandwidth; a transfer that broke off is started again ``requestretries`` times;
* the referrers of the manifest and of an index's children (signatures, SBOMs, attestations) follow
  their subject; a destination without the referrers API gets the referrers tag schema's index;
* what a destination tag names is asked with a HEAD, unless the rule's ledger may answer (``ledger``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from registry.mediatypes import INDEX_TYPES, InvalidManifest, ParsedManifest, parse
from registry.replication.items import COPIED, DELETE, DELETED, FAILED, SKIPPED, UNCHANGED, Item, Outcome
from registry.replication.ledger import Ledger
from registry.replication.remote import referrers_tag
from registry.replication.rules import Rule
from registry.replication.side import ItemFailed, Manifest, RemoteDown, Side, Transient
from registry.replication.throttle import Throttle
from storage.digests import Digest, digest_bytes, parse_digest

log = logging.getLogger("moorage.replication")
REFERRER_DEPTH = 3  # a signature of an SBOM of an image: referrers of referrers are followed this deep
HOLDERS = 100_000  # blobs whose destination repository is remembered for mounts
CONFIG_LIMIT = 1 << 20
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(slots=True)
class Tally:
    """What one item sent."""

    bytes: int = 0
    blobs: int = 0


@dataclass(slots=True)
class Traffic:
    """What the whole execution sent (read by the progress display and the metrics)."""

    bytes: int = 0
    blobs: int = 0
    listeners: list[Any] = field(default_factory=list)  # called with each piece's size

    def sent(self, size: int) -> None:
        self.bytes += size
        for listener in self.listeners:
            listener(size)


class Copier:
    """Copies the items of one execution; shared by all of them (blob flights, mount sources, slots)."""

    def __init__(self, rule: Rule, source: Side, destination: Side, throttle: Throttle,
                 traffic: Traffic | None = None, dry_run: bool = False, ledger: Ledger | None = None) -> None:
        self.rule = rule
        self.source = source
        self.destination = destination
        self.throttle = throttle
        self.traffic = traffic or Traffic()
        self.dry_run = dry_run
        self.slots = asyncio.Semaphore(rule.concurrency)
        self.flights: dict[Digest, asyncio.Future[str]] = {}  # blob -> its placement under way
        self.holders: OrderedDict[Digest, str] = OrderedDict()  # blob -> a destination repository holding it
        self.present: set[tuple[str, Digest]] = set()  # (repository, blob or manifest) known on the destination
        self.subject_locks: dict[tuple[str, Digest], asyncio.Lock] = {}
        self.indexes_referrers: bool | None = None  # whether the destination keeps the referrers API
        self.down_streak = 0  # items in a row that failed for want of an answer
        self.ledger = ledger  # what the destination's tags name, as far as the rule knows
        self.listed: dict[str, set[str]] = {}  # destination repository -> its tags, listed once (or by the plan)
        self.listing: dict[str, asyncio.Lock] = {}

    # --- items -------------------------------------------------------------------------------------

    async def run(self, item: Item) -> Outcome:
        """The item's outcome; ItemFailed and its kind are caught here, Refused goes up."""
        tally = Tally()
        try:
            outcome = await (self.delete(item) if item.action == DELETE else self.copy(item, tally))
        except (ItemFailed, Transient) as e:
            self.forget(item)  # the destination's tag may be anything now
            down = isinstance(e, (RemoteDown, Transient))
            self.down_streak = self.down_streak + 1 if down else 0
            return Outcome(FAILED, tally.bytes, tally.blobs, note=str(e) or type(e).__name__)
        self.down_streak = 0
        return outcome

    async def copy(self, item: Item, tally: Tally) -> Outcome:
        manifest = await self.source.manifest(item.source, item.reference)
        if manifest is None:
            return Outcome(SKIPPED, note=f"not on the {self.source.label} side (any more)")
        parsed = parsed_manifest(manifest)
        if item.referrer_only and parsed.subject is None:
            return Outcome(SKIPPED, digest=str(manifest.digest), note="no referrer: goes with its tag")
        reason = await self.filtered(item, manifest, parsed)
        if reason is not None:
            return Outcome(SKIPPED, digest=str(manifest.digest), note=reason)
        status = COPIED
        current = await self.destination_digest(item, manifest.digest)
        if current == manifest.digest:
            status = UNCHANGED
        elif current is not None and not self.rule.overwrite:
            return Outcome(SKIPPED, digest=str(manifest.digest),
                           note=f"the destination's tag names {current}; overwrite is off")
        elif self.dry_run:
            return Outcome(COPIED, digest=str(manifest.digest), note="dry run: would copy")
        else:
            await self.tree(item.source, item.destination, manifest, parsed, tally)
            await self.put(item.destination, item.reference, manifest, parsed)
            if self.ledger is not None and is_tag(item.reference):
                self.ledger.confirm(item.destination, item.reference, str(manifest.digest))
        if self.rule.referrers and not self.dry_run:
            subjects = [manifest.digest] + [child.digest for child in parsed.children]
            copied = 0
            for subject in subjects:
                copied += await self.referrers(item.source, item.destination, subject, tally, REFERRER_DEPTH)
            if copied and status == UNCHANGED:
                status = COPIED
        return Outcome(status, tally.bytes, tally.blobs, str(manifest.digest))

    async def delete(self, item: Item) -> Outcome:
        if await self.source.manifest_digest(item.source, item.reference) is not None:
            return Outcome(SKIPPED, note="on the source again: not deleted")
        if self.dry_run:
            return Outcome(DELETED, note="dry run: would delete")
        self.forget(item)
        if await self.destination.delete(item.destination, item.reference):
            return Outcome(DELETED)
        return Outcome(UNCHANGED, note="not on the destination")

    async def destination_digest(self, item: Item, digest: Digest) -> Digest | None:
        """What the destination's tag names: ``digest`` when the ledger says so (and may be trusted) and
        the destination still lists the tag; else its answer to a HEAD, recorded in the ledger."""
        ledger = self.ledger
        if ledger is None or not is_tag(item.reference):
            return await self.destination.manifest_digest(item.destination, item.reference)
        if ledger.trusted(item.destination, item.reference, str(digest)):
            if item.reference in await self.tags(item.destination):
                return digest
        current = await self.destination.manifest_digest(item.destination, item.reference)
        if current is None:
            ledger.forget(item.destination, item.reference)
        else:
            ledger.confirm(item.destination, item.reference, str(current))
        return current

    async def tags(self, repository: str) -> set[str]:
        """The destination's tags of ``repository``, listed once per execution (a failed listing is
        tried again by the next item)."""
        lock = self.listing.setdefault(repository, asyncio.Lock())
        async with lock:
            if repository not in self.listed:
                self.listed[repository] = set(await self.destination.tags(repository))
        return self.listed[repository]

    def forget(self, item: Item) -> None:
        if self.ledger is not None and is_tag(item.reference):
            self.ledger.forget(item.destination, item.reference)

    async def filtered(self, item: Item, manifest: Manifest, parsed: ParsedManifest) -> str | None:
        """Why the rule leaves this manifest alone (artifact types, labels); None when it takes it."""
        if not self.rule.artifact_types and not self.rule.labels:
            return None
        image, image_parsed = manifest, parsed
        if parsed.media_type in INDEX_TYPES and parsed.children:
            child = await self.source.manifest(item.source, str(parsed.children[0].digest))
            if child is None:
                raise ItemFailed(f"{item}: the index's first manifest is missing on the source")
            image, image_parsed = child, parsed_manifest(child)
        if self.rule.artifact_types:
            kind = parsed.artifact_type or image_parsed.artifact_type
            if kind not in self.rule.artifact_types:
                return f"artifact type {kind} not in the rule's artifacttypes"
        if self.rule.labels:
            labels = await self.labels(item.source, image, image_parsed)
            for key, wanted in self.rule.labels.items():
                if labels.get(key) != wanted:
                    return f"label {key}={labels.get(key)!r}, the rule wants {wanted!r}"
        return None

    async def labels(self, repository: str, image: Manifest, parsed: ParsedManifest) -> dict[str, str]:
        if not parsed.blobs or parsed.media_type in INDEX_TYPES:
            return {}
        config = parsed.blobs[0]
        if config.size > CONFIG_LIMIT:
            return {}
        async with self.source.open_blob(repository, config.digest) as stream:
            raw = b"".join([chunk async for chunk in stream.chunks])
        try:
            found = (json.loads(raw).get("config") or {}).get("Labels") or {}
        except (ValueError, AttributeError):
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    # --- manifests ---------------------------------------------------------------------------------

    async def tree(self, source: str, destination: str, manifest: Manifest, parsed: ParsedManifest,
                   tally: Tally) -> None:
        """Everything ``manifest`` names, on the destination (its own PUT is the caller's)."""
        for child in parsed.children:
            if await self.has_manifest(destination, child.digest):
                continue
            found = await self.source.manifest(source, str(child.digest))
            if found is None:
                raise ItemFailed(f"{self.source.label}: {source}@{manifest.digest} names {child.digest}, "
                                 "which is missing")
            child_parsed = parsed_manifest(found)
            await self.tree(source, destination, found, child_parsed, tally)
            await self.put(destination, str(child.digest), found, child_parsed)
        blobs = [b for b in parsed.blobs if not b.urls]  # foreign layers stay where their URLs say
        await gather_all(self.blob(source, destination, b.digest, b.size, tally) for b in blobs)

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        if (repository, digest) in self.present:
            return True
        if await self.destination.manifest_digest(repository, str(digest)) == digest:
            self.present.add((repository, digest))
            return True
        return False

    async def put(self, repository: str, reference: str, manifest: Manifest, parsed: ParsedManifest) -> None:
        indexed = await self.destination.put_manifest(repository, reference, manifest)
        self.present.add((repository, manifest.digest))
        if parsed.subject is not None:
            self.indexes_referrers = indexed
            if not indexed:
                await self.add_to_tag_schema(repository, parsed.subject.digest, manifest, parsed)

    async def referrers(self, source: str, destination: str, subject: Digest, tally: Tally, depth: int) -> int:
        """Copy the referrers of ``subject`` not yet on the destination; returns how many were copied."""
        copied = 0
        for descriptor in await self.source.referrers(source, subject):
            try:
                digest = parse_digest(str(descriptor.get("digest")))
            except ValueError:
                continue
            if await self.has_manifest(destination, digest):
                if self.indexes_referrers is False:  # make sure the tag schema lists it (an earlier run broke)
                    found = await self.source.manifest(source, str(digest))
                    if found is not None:
                        await self.add_to_tag_schema(destination, subject, found, parsed_manifest(found))
            else:
                found = await self.source.manifest(source, str(digest))
                if found is None:
                    continue  # deleted meanwhile
                parsed = parsed_manifest(found)
                await self.tree(source, destination, found, parsed, tally)
                await self.put(destination, str(digest), found, parsed)
                copied += 1
            if depth > 1:
                copied += await self.referrers(source, destination, digest, tally, depth - 1)
        return copied

    async def add_to_tag_schema(self, repository: str, subject: Digest, referrer: Manifest,
                                parsed: ParsedManifest) -> None:
        """List ``referrer`` in the destination's ``<alg>-<hex>`` index of ``subject`` (OCI's fallback)."""
        lock = self.subject_locks.setdefault((repository, subject), asyncio.Lock())
        async with lock:
            tag = referrers_tag(subject)
            current = await self.destination.manifest(repository, tag)
            entries: list[dict[str, Any]] = []
            if current is not None:
                try:
                    entries = [m for m in json.loads(current.content).get("manifests", []) if isinstance(m, dict)]
                except (ValueError, AttributeError):
                    entries = []
            if any(m.get("digest") == str(referrer.digest) for m in entries):
                return
            descriptor: dict[str, Any] = {"mediaType": referrer.media_type, "digest": str(referrer.digest),
                                          "size": len(referrer.content)}
            if parsed.artifact_type:
                descriptor["artifactType"] = parsed.artifact_type
            if parsed.annotations:
                descriptor["annotations"] = parsed.annotations
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*entries, descriptor]}
            content = json.dumps(index, separators=(",", ":")).encode()
            await self.destination.put_manifest(repository, tag, Manifest(digest_bytes(content), OCI_INDEX, content))

    # --- blobs -------------------------------------------------------------------------------------

    async def blob(self, source: str, destination: str, digest: Digest, size: int, tally: Tally) -> None:
        """Make the destination repository hold the blob: it has it, a mount, or a transfer.  One flight
        per blob at a time: whoever comes second waits, then finds it present or mounts it."""
        while (destination, digest) not in self.present:
            flight = self.flights.get(digest)
            if flight is None:
                break
            with contextlib.suppress(Exception):  # that one failed: this item tries for itself
                await asyncio.shield(flight)
        else:
            return
        flight = asyncio.get_running_loop().create_future()
        self.flights[digest] = flight  # no await since the look above: nobody else started one meanwhile
        try:
            if not await self.destination.has_blob(destination, digest):
                await self.place(source, destination, digest, size, tally)
            self.hold(destination, digest)
            flight.set_result(destination)
        except BaseException as e:
            flight.set_exception(e if isinstance(e, Exception) else ItemFailed("cancelled"))
            flight.exception()  # retrieved: the waiters go on by themselves
            raise
        finally:
            del self.flights[digest]

    async def place(self, source: str, destination: str, digest: Digest, size: int, tally: Tally) -> None:
        holder = self.holders.get(digest)
        if holder is not None and holder != destination:
            if await self.destination.mount_blob(destination, digest, holder):
                return
        if holder is None and await self.destination.mount_blob(destination, digest, None):
            return
        await self.transfer(source, destination, digest, size, tally)

    async def transfer(self, source: str, destination: str, digest: Digest, size: int, tally: Tally) -> None:
        """Stream the blob across, started again after a transient failure (a fresh read of the source)."""
        wait = 0.5
        for attempt in range(self.rule.requestretries + 1):
            async with self.slots:
                sent = 0
                try:
                    async with self.source.open_blob(source, digest) as stream:
                        if stream.size != size:
                            raise ItemFailed(f"{self.source.label}: blob {digest} has {stream.size} bytes, "
                                             f"its manifest says {size}")

                        async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                            nonlocal sent
                            async for chunk in chunks:
                                sent += len(chunk)
                                self.traffic.sent(len(chunk))
                                yield chunk

                        await self.destination.write_blob(destination, digest, size,
                                                          counted(self.throttle.limit(stream.chunks)))
                    tally.bytes += sent
                    tally.blobs += 1
                    self.traffic.blobs += 1
                    return
                except Transient as e:
                    tally.bytes += sent
                    if attempt == self.rule.requestretries:
                        raise RemoteDown(str(e)) from None
                    log.info("replication %s: blob %s to %s: %s; again in %.1fs", self.rule.name, digest,
                             destination, e, wait)
            await asyncio.sleep(wait)
            wait *= 2

    def hold(self, repository: str, digest: Digest) -> None:
        self.present.add((repository, digest))
        self.holders[digest] = repository
        self.holders.move_to_end(digest)
        if len(self.holders) > HOLDERS:
            self.holders.popitem(last=False)


def is_tag(reference: str) -> bool:
    return ":" not in reference  # else a digest


def parsed_manifest(manifest: Manifest) -> ParsedManifest:
    try:
        return parse(manifest.content, manifest.media_type)
    except InvalidManifest as e:
        raise ItemFailed(f"manifest {manifest.digest} cannot be copied: {e.message}") from None


async def gather_all(coroutines: Any) -> None:
    """Run them all; the first failure is raised once every one has finished (none left dangling)."""
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


