"""What a rule knows its destination holds: for each destination tag it wrote or looked at, the manifest
digest and when an answer of the destination last confirmed it.

A tag whose source digest is the one recorded, confirmed less than the rule's ``recheck`` ago, and still
listed by the destination (one tag list per repository instead of one HEAD per tag) is unchanged without
a HEAD: a scheduled run with nothing changed asks the destination a few hundred questions, not thousands.
A tag deleted on the destination is missing from its list and copied again; a tag a third party moved
there is noticed at the next ``recheck`` (``recheck: 0`` asks every time).

Kept in the storage next to the executions (``_moorage/replication/<rule>/destination.json``), written
when an execution ends.  An execution that did not end (killed, its lease lost) leaves the ``.open``
marker behind, and the next one trusts nothing recorded: it may have changed tags it never recorded.
"""

from __future__ import annotations

import asyncio
import json
import time

from storage import paths
from storage.driver import PathNotFound, StorageDriver

Key = tuple[str, str]  # (destination repository, tag)


class Ledger:
    def __init__(self, url: str, recheck: float) -> None:
        self.url = url
        self.recheck = recheck
        self.entries: dict[Key, tuple[str, float]] = {}  # (repository, tag) -> (digest, confirmed at)

    def trusted(self, repository: str, tag: str, digest: str) -> bool:
        """Whether the destination's ``tag`` was confirmed to name ``digest`` less than ``recheck`` ago."""
        found = self.entries.get((repository, tag))
        return found is not None and found[0] == digest and time.time() - found[1] < self.recheck

    def confirm(self, repository: str, tag: str, digest: str) -> None:
        """The destination answered (a HEAD, a PUT) that ``tag`` names ``digest``, now."""
        self.entries[(repository, tag)] = (digest, time.time())

    def forget(self, repository: str, tag: str) -> None:
        self.entries.pop((repository, tag), None)

    def retain(self, keys: set[Key]) -> None:
        """Only these tags (every one a full plan took): the others left the source or the rule."""
        self.entries = {key: value for key, value in self.entries.items() if key in keys}


class LedgerStore:
    def __init__(self, driver: StorageDriver, rule: str) -> None:
        self.driver = driver
        self.path = f"{paths.replication_rule(rule)}/destination.json"
        self.marker = f"{paths.replication_rule(rule)}/destination.open"

    async def open(self, url: str, recheck: float) -> Ledger:
        """The ledger for an execution starting now (empty when the last one did not end, or the rule
        points at another destination since); marked open until ``close``."""
        ledger = Ledger(url, recheck)
        if recheck > 0 and not await self.marked():
            ledger.entries = await self.load(url)
        await self.driver.put_content(self.marker, b"")
        return ledger

    async def marked(self) -> bool:
        try:
            await self.driver.stat_file(self.marker)
        except PathNotFound:
            return False
        return True

    async def load(self, url: str) -> dict[Key, tuple[str, float]]:
        try:
            raw = await self.driver.get_content(self.path)
        except PathNotFound:
            return {}
        return await asyncio.to_thread(decode, raw, url)  # a rule of 100,000 tags: megabytes of JSON

    async def close(self, ledger: Ledger) -> None:
        """Save what the execution learnt, then drop the marker: the entries can be trusted again."""
        await self.driver.put_content(self.path, await asyncio.to_thread(encode, ledger))
        await self.driver.delete_file(self.marker)


def encode(ledger: Ledger) -> bytes:
    tags: dict[str, dict[str, tuple[str, float]]] = {}
    for (repo, tag), entry in sorted(ledger.entries.items()):
        tags.setdefault(repo, {})[tag] = entry
    return json.dumps({"url": ledger.url, "tags": tags}).encode()


def decode(raw: bytes, url: str) -> dict[Key, tuple[str, float]]:
    """The entries stored for ``url``; none when they are of another destination or garbled."""
    try:
        found = json.loads(raw)
        if found.get("url") != url:
            return {}
        return {(repo, tag): (str(digest), float(when))
                for repo, tags in found["tags"].items() for tag, (digest, when) in tags.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}
