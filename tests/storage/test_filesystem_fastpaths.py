"""The filesystem driver's fast paths: grouped small writes (all or nothing, no temporary files left) and the
link cache (never stale after a write by another process or replica)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storage.driver import PathNotFound, filesystem
from storage.driver.filesystem import TEMP_PREFIX, FilesystemDriver

pytestmark = pytest.mark.anyio


async def test_failed_group_publishes_nothing(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    await driver.put_content("/fail/blocker", b"a file where a directory is needed")
    with pytest.raises(NotADirectoryError):
        await driver.put_contents([("/fail/first/link", b"1"), ("/fail/blocker/second/link", b"2")])
    with pytest.raises(PathNotFound):
        await driver.get_content("/fail/first/link")
    assert os.listdir(tmp_path / "fail" / "first") == []
    await driver.close()


async def test_group_replaces_in_place_without_temporaries(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    await driver.put_contents([("/r/a/link", b"1"), ("/r/b/link", b"2")])
    await driver.put_contents([("/r/a/link", b"3"), ("/r/b/link", b"4")])
    assert await driver.get_content("/r/a/link") == b"3" and await driver.get_content("/r/b/link") == b"4"
    leftovers = [n for _, _, names in os.walk(tmp_path) for n in names if n.startswith(TEMP_PREFIX)]
    assert leftovers == []
    await driver.close()


async def test_cached_link_never_stale_after_another_replica_writes(tmp_path: Path) -> None:
    reader, writer = FilesystemDriver(str(tmp_path)), FilesystemDriver(str(tmp_path))
    link = "/repositories/r/_manifests/tags/t/current/link"
    await writer.put_content(link, b"sha256:" + b"a" * 64)
    old = time.time() - 60
    os.utime(reader.full_path(link), (old, old))  # old enough to be cached
    assert await reader.get_content(link) == b"sha256:" + b"a" * 64
    assert await reader.get_content(link) == b"sha256:" + b"a" * 64  # from the cache
    await writer.put_content(link, b"sha256:" + b"b" * 64)  # a push through the other replica
    assert await reader.get_content(link) == b"sha256:" + b"b" * 64
    with open(reader.full_path(link), "r+b") as f:  # rewritten in place (Distribution 2.8.2), same size
        f.write(b"sha256:" + b"c" * 64)
    assert await reader.get_content(link) == b"sha256:" + b"c" * 64
    await writer.delete(link)
    with pytest.raises(PathNotFound):
        await reader.get_content(link)
    await reader.close()
    await writer.close()


async def test_cached_listing_sees_an_entry_added_in_the_same_clock_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory's mtime has the file system's clock granularity: an entry added in the tick of a cached
    listing leaves it as it was.  A listing of a recently changed directory is not kept, not even for
    later, when the unchanged mtime would look old enough (GC's walk must see a repository created just
    after another request listed its parent)."""
    reader, writer = FilesystemDriver(str(tmp_path)), FilesystemDriver(str(tmp_path))
    await writer.put_content("/repositories/team/a/link", b"1")
    directory = tmp_path / "repositories" / "team"
    assert await reader.list("/repositories/team") == ["a"]
    tick = directory.stat().st_mtime_ns
    await writer.put_content("/repositories/team/b/link", b"2")
    os.utime(directory, ns=(tick, tick))  # as if in the same tick
    assert await reader.list("/repositories/team") == ["a", "b"]
    await writer.put_content("/repositories/team/c/link", b"3")
    os.utime(directory, ns=(tick, tick))
    monkeypatch.setattr(filesystem, "FRESH_NS", -1)  # as if FRESH_NS had passed since the mtime
    assert await reader.list("/repositories/team") == ["a", "b", "c"]
    await reader.close()
    await writer.close()


def test_removing_a_tree_whose_directory_a_concurrent_write_made_again(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag's directory removed and made again (a delete and a PUT of the tag) between rmtree's stat and open
    of it: shutil reports "Cannot call rmtree on a symbolic link" (no errno); another pass removes the tree."""
    tree = tmp_path / "tags" / "moving"
    (tree / "current").mkdir(parents=True)
    (tree / "current" / "link").write_bytes(b"sha256:...")
    real_open = os.open
    swapped: list[str] = []

    def racing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path == "current" and not swapped:
            swapped.append(path)
            (tmp_path / "new").mkdir()  # made before the old one goes: it cannot reuse its inode
            (tree / "current").rename(tmp_path / "deleted")
            (tmp_path / "new").rename(tree / "current")  # another directory now, under the same name
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", racing_open)
    filesystem.remove_tree(str(tree))
    assert swapped and not tree.exists()
