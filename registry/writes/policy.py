"""The rules a write must pass besides validation: the hook where tag rules and per-namespace limits plug in.

Every write the write path makes is described as a ``Write`` (the event it will publish: what, where,
by whom) and handed to each ``WritePolicy`` in turn before anything is stored; a policy refuses by
raising ``RegistryError`` (the
spec's codes: ``DENIED`` for a rule, ``UNSUPPORTED`` for something this registry does not do).  Today's
rules are policies too: ``DeletesDisabled`` (``storage.delete.enabled: false``) and ``ActorScope`` (the
caller's grant must hold for the write, whoever calls the write path).  Rules decided by the registry's
shape rather than by who writes (read-only mode, mirrored repositories) are the writer's own
``check_writable``, which HTTP also asks before reading a request's body.

A tag rule (e.g. immutable tags: a pattern per namespace whose tags, once pushed, only an owner may move
or delete) is a policy that looks at ``TAG_SET`` and ``TAG_DELETED`` writes: ``change.tags`` holds the
tag, ``change.digest`` the manifest it would point at (None for a delete), ``await write.current()``
what it points at now (one storage read, only when asked), ``change.actor`` who asks (``kind``,
``name``, ``grant``).  A manifest push with tags makes one ``TAG_SET`` write per tag after the
``MANIFEST_PUSHED`` one; a delete by digest makes one ``TAG_DELETED`` per tag that points at the
manifest after the ``MANIFEST_DELETED`` one.

Quota limits come from ``NamespaceLimits`` (``storage.quotas`` today; a database of namespaces may
answer instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from registry.errors import RegistryError
from registry.writes.events import DELETES, EventKind, RepositoryEvent
from storage.digests import Digest


async def no_current() -> Digest | None:
    return None


@dataclass(frozen=True, slots=True)
class Write:
    """A change about to be made: the event it will publish (``change.kind``, ``repository``, ``actor``,
    ``digest``, ``tags``, ``from_repository``), and for tag writes what the tag points at now."""

    change: RepositoryEvent
    current: Callable[[], Awaitable[Digest | None]] = no_current


class WritePolicy(Protocol):
    async def check(self, write: Write) -> None:
        """Return to allow the write; raise RegistryError to refuse it."""
        ...


class NamespaceLimits(Protocol):
    async def limit(self, namespace: str) -> int | None:
        """The byte limit of ``namespace``; None for none."""
        ...


class DeletesDisabled:
    """``storage.delete.enabled: false``: no tag, manifest or blob is deleted (Distribution's 405)."""

    async def check(self, write: Write) -> None:
        if write.change.kind in DELETES:
            raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry")


class ActorScope:
    """The caller's grant must allow the write: push for pushes, tags and mounts (pull on a mount's
    source), delete for deletes.  Actors without a grant (the registry itself) are not checked here."""

    async def check(self, write: Write) -> None:
        change = write.change
        grant = change.actor.grant
        if grant is None or grant.everything:
            return
        needed = [("delete" if change.kind in DELETES else "push", change.repository)]
        if change.kind is EventKind.BLOB_MOUNTED:
            needed.append(("pull", change.from_repository) if change.from_repository else ("*", "*"))
        for action, name in needed:
            if not grant.may("repository", name, action):
                raise RegistryError("DENIED", detail={"repository": name, "action": action})
