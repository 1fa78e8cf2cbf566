"""The one walk of the repository tree (``storage.tree``), on every driver: repositories in lexical order
from any start point, whatever a repository holds, and every blob."""

from __future__ import annotations

import pytest

from storage import paths, tree
from storage.blobs import BlobStore
from storage.digests import digest_bytes
from storage.driver import StorageDriver
from storage.manifests import ManifestStore, TagStore
from storage.tree import RepositoryTree
from storage.uploads import UploadStore
from tests.storage.repositories import TRICKY, catalog_fixture, make_repository

pytestmark = pytest.mark.anyio


async def collect(tree_: RepositoryTree, after: str = "", marker: str = paths.MANIFESTS) -> list[str]:
    return [name async for name in tree_.repositories(after, marker)]


@pytest.mark.parametrize("batch", [1000, 1, 4])
async def test_repositories_in_lexical_order_in_batches(driver: StorageDriver, batch: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "BATCH", batch)
    await catalog_fixture(driver)
    walker = RepositoryTree(driver, keys_per_request=3)
    assert await collect(walker) == sorted(TRICKY)
    assert await collect(walker, "a/b") == [n for n in sorted(TRICKY) if n > "a/b"]
    assert await collect(walker, "a/") == [n for n in sorted(TRICKY) if n > "a/"]  # need not exist
    assert await collect(walker, "zz") == []


async def test_repositories_by_marker(driver: StorageDriver) -> None:
    """``_uploads`` finds where a push started, a first push that never finished included."""
    await catalog_fixture(driver)  # an upload in q-pending, which has no manifests
    store = UploadStore(driver, BlobStore(driver))
    await store.create("a/b")
    walker = RepositoryTree(driver)
    assert await collect(walker, marker=paths.UPLOADS) == ["a/b", "ab", "q-pending"]
    assert await collect(walker, marker=paths.LAYERS) == sorted([*TRICKY, "a/pending"])
    assert await walker.is_repository("a/b") and not await walker.is_repository("a/pending")
    assert await walker.is_repository("a/pending", paths.LAYERS)
    await store.close()


async def test_what_a_repository_holds(driver: StorageDriver) -> None:
    blobs = BlobStore(driver)
    manifests, tags = ManifestStore(driver, blobs), TagStore(driver)
    first, second = b'{"a":1}', b'{"b":2}'
    d1, d2 = digest_bytes(first), digest_bytes(second, "sha512")
    await manifests.put("team/app", d1, first)
    await manifests.put("team/app", d2, second)
    await tags.tag("team/app", "v1", d1)
    await tags.tag("team/app", "v1", d2)
    await tags.tag("team/app", "latest", d1)
    await blobs.link("team/app", d1)
    await driver.put_content(paths.revision_link("team/app", d1).replace(d1.hex, "not-hex"), b"junk")
    store = UploadStore(driver, blobs)
    upload = await store.create("team/app")

    walker = RepositoryTree(driver)
    assert await walker.tags("team/app") == ["latest", "v1"]
    assert await walker.tag_current("team/app", "v1") == d2
    assert await walker.tag_current("team/app", "gone") is None
    assert await walker.tag_index("team/app", "v1") == sorted([d1, d2], key=str)
    assert await walker.revisions("team/app") == sorted([d1, d2], key=str)  # the garbled entry is left out
    assert await walker.layers("team/app") == [d1]
    assert await walker.uploads("team/app") == [upload.id]
    for missing in (walker.tags, walker.revisions, walker.layers, walker.uploads):
        assert await missing("no/such") == []
    assert await walker.referrers("team/app", d1) == []
    await store.close()


async def test_every_blob(driver: StorageDriver) -> None:
    walker = RepositoryTree(driver)
    assert [d async for d in walker.blobs()] == []
    blobs = BlobStore(driver)
    contents = [f"blob {i}".encode() for i in range(12)]
    expected = [digest_bytes(c) for c in contents] + [digest_bytes(b"long", "sha512")]
    for content in contents:
        await blobs.put(digest_bytes(content), content)
    await blobs.put(expected[-1], b"long")
    await driver.put_content(f"{paths.blobs_prefix_dir('sha256', 'zz')}/not-a-digest/data", b"x")
    await driver.put_content(f"{paths.blobs_prefix_dir('sha256', 'ab')}/{'cd' * 32}/data", b"misplaced")
    assert [d async for d in walker.blobs()] == sorted(expected, key=lambda d: (d.algorithm, d.hex))


async def test_layers_of_many_repositories(driver: StorageDriver) -> None:
    for i in range(5):
        await make_repository(driver, f"r{i}", layers=i)
    walker = RepositoryTree(driver)
    counts = {name: len(await walker.layers(name)) async for name in walker.repositories(marker=paths.LAYERS)}
    assert counts == {f"r{i}": i for i in range(1, 5)}
