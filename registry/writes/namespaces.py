"""The database's namespace settings on the write path (``auth.database``): immutable tags and quotas.

**Immutable tags**: once a tag matching a pattern of the closest namespace that sets ``immutable_tags``
exists, it is never moved to another manifest nor deleted, except by an owner of that namespace or an
admin (Harbor's tag immutability, with the issue's owner exception).  Pushing the manifest it already
names again is no change and passes; so does the first push of the tag.  The registry's own mirror
filling its cache is not held to it.

**Quotas**: a top-level namespace's ``quota`` (bytes) is its limit where ``storage.quotas`` sets none
(the file's rules come first, as everywhere), counted by the same ledger.
"""

from __future__ import annotations

from auth import roles
from auth.policy import MAX_AGE, DatabasePolicy
from auth.rules import glob_regex
from registry.errors import RegistryError
from registry.maintenance.quotas import Quotas
from registry.writes.actor import MIRROR
from registry.writes.events import EventKind
from registry.writes.policy import Write

TAG_WRITES = frozenset({EventKind.TAG_SET, EventKind.TAG_DELETED})


def matches(patterns: tuple[str, ...], tag: str) -> bool:
    return any((rx := glob_regex(p, "")) is not None and rx.fullmatch(tag) for p in patterns)


class ImmutableTags:
    """A ``WritePolicy`` (registry/writes/policy.py) over the database's policy snapshot."""

    def __init__(self, policy: DatabasePolicy) -> None:
        self.policy = policy

    async def check(self, write: Write) -> None:
        change = write.change
        if change.kind not in TAG_WRITES or change.actor.kind == MIRROR:
            return
        snapshot = await self.policy.cache.fresh(MAX_AGE)
        found = snapshot.namespace_setting(change.repository, "immutable_tags")
        if found is None:
            return
        namespace, patterns = found
        tag = change.tags[0]
        if not matches(tuple(patterns), tag):  # type: ignore[arg-type]
            return
        current = await write.current()
        if current is None or (change.kind is EventKind.TAG_SET and current == change.digest):
            return
        user = change.actor.name
        teams = self.policy.teams(user) if user else frozenset()
        if self.policy.is_admin(user) or snapshot.role(user, change.repository, teams) == roles.OWNER:
            return
        verb = "moved" if change.kind is EventKind.TAG_SET else "deleted"
        raise RegistryError(
            "DENIED", f"tag {tag} is immutable (namespace {namespace}: {', '.join(patterns)}): it cannot be "  # type: ignore[arg-type]
                      f"{verb}; only the namespace's owners may",
            detail={"repository": change.repository, "tag": tag, "namespace": namespace})


class NamespaceQuotas:
    """``NamespaceLimits`` (registry/writes/policy.py): ``storage.quotas`` first, then the database."""

    def __init__(self, policy: DatabasePolicy, file: Quotas | None) -> None:
        self.policy = policy
        self.file = file

    async def limit(self, namespace: str) -> int | None:
        if self.file is not None:
            limit = self.file.limit_for(namespace)
            if limit is not None:
                return limit
        snapshot = await self.policy.cache.fresh(MAX_AGE)
        found = snapshot.namespaces.get(namespace)
        return found.record.quota if found is not None else None
