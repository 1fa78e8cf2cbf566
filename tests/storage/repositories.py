"""Repository trees for the catalog and tree-walk tests: names whose keys sort unlike the names themselves,
and directories that look like repositories but are none."""

from __future__ import annotations

import asyncio

from storage import paths
from storage.digests import digest_bytes
from storage.driver import StorageDriver

TRICKY = ["a", "a-c", "a.x", "a/0", "a/0/x", "a/1b", "a/b", "a/b/c", "a/b-c", "a_b", "ab", "b", "m/n",
          "seed", "x-1/y", "x/2", "x/2-1", "z/y/x"]


async def make_repository(driver: StorageDriver, name: str, layers: int = 1) -> None:
    for i in range(layers):
        digest = digest_bytes(f"{name}/{i}".encode())
        await driver.put_content(paths.layer_link(name, digest), str(digest).encode())
    digest = digest_bytes(name.encode())
    await driver.put_content(paths.revision_link(name, digest), str(digest).encode())


async def catalog_fixture(driver: StorageDriver, layers: int = 1) -> None:
    await asyncio.gather(*(make_repository(driver, name, layers) for name in TRICKY))
    # not repositories: blobs pushed without a manifest yet, and an upload in progress
    digest = digest_bytes(b"pending")
    await driver.put_content(paths.layer_link("a/pending", digest), str(digest).encode())
    await driver.put_content(paths.upload_started_at("q-pending", "u"), b"now")
    await driver.put_content(f"{paths.repository('ab')}/_uploads/u/x/_manifests/revisions/link", b"junk")
