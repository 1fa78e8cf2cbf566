"""The items of an execution (one tag or manifest to copy, or to delete) and what became of each, in the
JSON form they are stored in (``executions``) and shown in (the API, the UI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

COPY, DELETE = "copy", "delete"
# outcomes: the destination has it now (copied), had it already (unchanged), deleted, left alone on
# purpose (skipped: filtered, gone from the source, a different tag kept), or failed
COPIED, UNCHANGED, DELETED, SKIPPED, FAILED = "copied", "unchanged", "deleted", "skipped", "failed"
SUCCEEDED = frozenset({COPIED, UNCHANGED, DELETED, SKIPPED})


@dataclass(frozen=True, slots=True)
class Item:
    action: str  # COPY or DELETE
    source: str  # repository on the source side
    reference: str  # a tag, or a digest
    destination: str  # repository on the destination side
    pushed: float | None = None  # when the push that asked for it happened (the replication lag's start)
    referrer_only: bool = False  # a manifest pushed by digest: copied only when it refers to a subject

    def lag(self, now: float) -> float | None:
        """Seconds from the push that asked for the item until ``now``."""
        return None if self.pushed is None else max(0.0, now - self.pushed)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.action, self.source, self.reference

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        return {k: v for k, v in found.items() if v not in (None, False)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Item:
        return cls(raw["action"], raw["source"], raw["reference"], raw["destination"], raw.get("pushed"),
                   bool(raw.get("referrer_only")))

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        arrow = "x" if self.action == DELETE else "->"
        return f"{self.source}{sep}{self.reference} {arrow} {self.destination}"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    bytes: int = 0  # blob bytes sent for this item
    blobs: int = 0  # blobs sent (not those the destination had or mounted)
    digest: str | None = None
    note: str | None = None  # why it was skipped, or the error

    @property
    def ok(self) -> bool:
        return self.status in SUCCEEDED

    def as_json(self) -> dict[str, Any]:
        """Made by hand: every checkpoint writes every outcome (``asdict`` cost a 1,000-item copy 5 % of its CPU)."""
        found: dict[str, Any] = {"status": self.status}
        for key, value in (("bytes", self.bytes), ("blobs", self.blobs), ("digest", self.digest), ("note", self.note)):
            if value:
                found[key] = value
        return found

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Outcome:
        return cls(raw["status"], raw.get("bytes", 0), raw.get("blobs", 0), raw.get("digest"), raw.get("note"))
