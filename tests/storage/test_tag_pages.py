"""Tag pages (``TagStore.page``): complete and in lexical order from any start, at a cost of O(page), not
O(tags) (issue 24, item 2: 10,009 tags paged by 7 took 340 s when every page read every tag)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from registry.repository import Repository
from storage import paths
from storage.blobs import BlobStore
from storage.digests import digest_bytes
from storage.driver import PathNotFound, StorageDriver
from storage.manifests import ManifestStore, TagStore
from tests.callcount import count_calls, counted

pytestmark = pytest.mark.anyio

# keys sort unlike names where a tag continues another with "-" or ".": "a-b/current/link" < "a/current/link"
TRICKY = ["a", "a-", "a-b", "a.c", "a0", "a_", "aa", "b", "b-1", "b-1-2", "b.", "latest", "v1", "v1.0", "v1.0-rc"]
DIGEST = digest_bytes(b"manifest")


async def tag_all(store: TagStore, name: str, tags: list[str]) -> None:
    for start in range(0, len(tags), 64):
        await asyncio.gather(*(store.tag(name, tag, DIGEST) for tag in tags[start : start + 64]))


async def pages(store: TagStore, name: str, size: int) -> list[list[str]]:
    got, last = [], None
    while True:
        tags, more = await store.page(name, last, size)
        got.append(tags)
        if not more:
            return got
        last = tags[-1]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
async def test_pages_are_complete_and_in_order(driver: StorageDriver, size: int) -> None:
    store = TagStore(driver)
    await tag_all(store, "team/app", TRICKY)
    # a tag whose write stopped after the index link was never acknowledged: not listed
    await driver.put_content(paths.tag_index_link("team/app", "half", DIGEST), str(DIGEST).encode())
    got = await pages(store, "team/app", size)
    assert [tag for page in got for tag in page] == sorted(TRICKY)
    assert all(len(page) == size for page in got[:-1])
    assert await store.page("team/app", "a-", 2) == (["a-b", "a.c"], True)
    assert await store.page("team/app", "zzz", 2) == ([], False)
    with pytest.raises(PathNotFound):
        await store.page("team/none", None, 5)


def count_reads(driver: StorageDriver, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls = count_calls(driver, ("list", "list_keys", "list_nested", "stat", "get_content"), monkeypatch)
    monkeypatch.setattr(os.path, "isfile", counted(calls, "isfile", os.path.isfile))
    return calls


async def test_a_page_costs_the_page_not_every_tag(driver: StorageDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TagStore(driver)
    tags = [f"t{n:05d}" for n in range(600 if driver.name != "filesystem" else 2000)]  # S3: 1,200 keys
    await tag_all(store, "team/many", tags)
    blobs = BlobStore(driver)
    repository = Repository("team/many", driver, blobs, ManifestStore(driver, blobs), store)
    calls = count_reads(driver, monkeypatch)
    page = await repository.tag_page("t00123", 7)
    assert (page.tags, page.more) == (tags[124:131], True)
    # disk: one listing (cached while the directory is unchanged) and the page's own 8 tags checked;
    # S3: one listing request of the keys after "t00123" (before: every key of every tag, every page)
    assert sum(calls.values()) <= 10, calls
    assert calls["list_nested"] == 0 and calls["isfile"] <= 8 and calls["list_keys"] <= 1, calls
