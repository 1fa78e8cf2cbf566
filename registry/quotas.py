"""Quotas per namespace (``storage.quotas``): a byte limit on the unique blobs a namespace stores.

Rules are ordered; the first whose ``namespaces`` glob matches a namespace (the first component of a
repository name) gives its ``limit``, and each matching namespace has that limit on its own.  Usage
comes from the incremental ledger in the storage (``storage/usage.py``), so every replica sees the
same figure.  A push that would go over is refused with DENIED: an upload as soon as it declares its
size (monolithic POST/PUT, PATCH with a length), a mount before it links, at the latest the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auth.rules import glob_regex
from registry.config import ConfigError, string_list
from registry.errors import RegistryError
from storage.metrics import quota_usage
from storage.usage import UsageLedger, namespace_of

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

    async def check(self, ledger: UsageLedger, name: str, adding: int) -> None:
        """Refuse (DENIED) when ``adding`` more bytes would take the namespace of ``name`` over its limit."""
        ns = namespace_of(name)
        limit = self.limit_for(ns)
        if limit is None or adding <= 0:
            return
        used = await ledger.usage(ns)
        quota_usage(ns, used, limit)
        if used + adding > limit:
            raise RegistryError(
                "DENIED", f"quota exceeded: namespace {ns} stores {used} bytes of its {limit}; this push adds {adding}",
                detail={"namespace": ns, "usage": used, "limit": limit, "adding": adding},
            )


def parse_size(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = SIZE_RE.fullmatch(str(value).strip().lower()) if isinstance(value, str) else None
    if match is None or match.group(2) not in SIZE_UNITS:
        raise ConfigError(f"{key}: expected a size such as 500MiB or 10GB, got {value!r}")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


def parse_quotas(raw: Any, key: str = "storage.quotas") -> Quotas:
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list of {{namespaces, limit}}")
    rules = []
    for i, entry in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        for sub in entry:
            if sub not in ("namespaces", "limit"):
                raise ConfigError(f"{where}.{sub}: unknown key (known: namespaces, limit)")
        for required in ("namespaces", "limit"):
            if required not in entry:
                raise ConfigError(f"{where}.{required}: required")
        patterns = tuple(string_list(entry["namespaces"], f"{where}.namespaces"))
        for pattern in patterns:
            if not NAMESPACE_PATTERN_RE.fullmatch(pattern):
                raise ConfigError(f"{where}.namespaces: bad pattern {pattern!r} (one name component, * and ?)")
        rules.append(Quota(patterns, parse_size(entry["limit"], f"{where}.limit")))
    return Quotas(rules)
