"""Quotas per namespace (``storage.quotas``): a byte limit on the unique blobs a namespace stores.

Rules are ordered; the first whose ``namespaces`` glob matches a namespace (the first component of a
repository name) gives its ``limit``, and each matching namespace has that limit on its own.  Usage
comes from the incremental ledger in the storage (``storage/usage.py``), so every replica sees the
same figure; the write path refuses what would go over (``registry/writes/quota.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainValidator, model_validator

from auth.rules import glob_regex
from configkit import Invalid, Section, Texts, compiled, convert

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
NAMESPACE_PATTERN_RE = re.compile(r"[a-z0-9._*?-]+")


@dataclass(frozen=True, slots=True)
class Quota:
    namespaces: tuple[str, ...]
    limit: int


@dataclass(slots=True)
class Quotas:
    rules: list[Quota]

    def limit_for(self, ns: str) -> int | None:
        for rule in self.rules:
            if any((rx := glob_regex(p, "")) is not None and rx.fullmatch(ns) for p in rule.namespaces):
                return rule.limit
        return None

    async def limit(self, namespace: str) -> int | None:
        """``NamespaceLimits`` for the write path's quota checks (registry/writes/quota.py)."""
        return self.limit_for(namespace)


def to_size(value: Any) -> int:
    """Bytes, or a size such as ``500MiB`` or ``10GB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = SIZE_RE.fullmatch(str(value).strip().lower()) if isinstance(value, str) else None
    if match is None or match.group(2) not in SIZE_UNITS:
        raise Invalid(f"expected a size such as 500MiB or 10GB, got {value!r}")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


Size = Annotated[int, PlainValidator(to_size)]


def parse_size(value: Any, key: str) -> int:
    return convert(Size, value, key)


class QuotaSettings(Section):
    namespaces: Texts
    limit: Size

    @model_validator(mode="after")
    def _check(self) -> QuotaSettings:
        for pattern in self.namespaces:
            if not NAMESPACE_PATTERN_RE.fullmatch(pattern):
                raise Invalid(f"bad pattern {pattern!r} (one name component, * and ?)", "namespaces")
        return self


QuotasConfig = Annotated[
    Quotas, compiled(list[QuotaSettings], lambda rules: Quotas([Quota(tuple(r.namespaces), r.limit) for r in rules]))
]  # ``storage.quotas``, compiled
