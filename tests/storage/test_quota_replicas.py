"""Quotas across replicas on every backend (issue 24 item 9): two registries on one storage race
16 completions, 16 mounts and 16 monolithic uploads of 100 KiB, each kind into a namespace of its own with
1 MiB, through their write paths; at most 10 of each are accepted and the ledger, which both read, stays
within the limit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from registry.config import parse
from registry.errors import RegistryError
from registry.instance import Registry
from registry.writes.actor import ANONYMOUS, Actor
from storage.digests import Digest
from tests.storage.conftest import DriverFactory

pytestmark = pytest.mark.anyio
KiB = 1024
LIMIT = 1 << 20
ACTOR = Actor(ANONYMOUS)


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def accepted(attempts: list[Awaitable[object]]) -> int:
    results = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, RegistryError)]
    assert all(r.code == "DENIED" for r in refused) and not [r for r in results if isinstance(r, BaseException)
                                                             and not isinstance(r, RegistryError)], results
    return len(results) - len(refused)


async def test_two_replicas_never_take_a_namespace_over_its_quota(make_driver: DriverFactory) -> None:
    config = parse({"storage": {"quotas": [{"namespaces": ["q*"], "limit": LIMIT}],
                                "maintenance": {"uploadpurging": {"enabled": False}}}})
    replicas = [Registry.build(config, driver=make_driver()) for _ in range(2)]
    blobs = {kind: [kind.encode() + bytes([i]) * (100 * KiB - len(kind)) for i in range(16)]
             for kind in ("completions", "mounts", "monolithic")}
    for blob in blobs["mounts"]:  # in a namespace without a quota, to mount from
        await replicas[0].writer.push_blob("src/app", digest_of(blob), body(blob), ACTOR, len(blob))

    async def uploaded(registry: Registry, blob: bytes) -> Callable[[], Awaitable[int]]:
        """A session holding the blob's bytes (stored below the write path: the completion decides)."""
        upload = await registry.uploads.create("qcompletions/app")
        await registry.uploads.append(upload, body(blob))
        return lambda: registry.writer.commit_upload(upload, digest_of(blob), None, ACTOR)

    completions = [await uploaded(replicas[i % 2], blob) for i, blob in enumerate(blobs["completions"])]
    writers = [replicas[i % 2].writer for i in range(16)]
    results = {
        "completions": await accepted([complete() for complete in completions]),
        "mounts": await accepted([writer.mount("qmounts/app", digest_of(blob), "src/app", ACTOR)
                                  for writer, blob in zip(writers, blobs["mounts"], strict=True)]),
        "monolithic": await accepted([writer.push_blob("qmonolithic/app", digest_of(blob), body(blob), ACTOR,
                                                       len(blob))
                                      for writer, blob in zip(writers, blobs["monolithic"], strict=True)]),
    }
    print(results)
    ledger = replicas[1].ledger
    assert ledger is not None
    for kind, count in results.items():
        assert 1 <= count <= 10, results  # 10 x 100 KiB fit in 1 MiB
        figures = await ledger.figures(f"q{kind}")
        assert figures.uploading == 0 and figures.stored == count * 100 * KiB <= LIMIT, (kind, figures)
    for registry in replicas:
        await registry.close()
