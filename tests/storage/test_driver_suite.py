"""The driver suite every storage driver must pass (after Distribution's ``storagedriver/testsuites``).

Each test runs on every backend of ``conftest.BACKENDS``.  Tests that reopen a writer do so from a new
driver instance: nothing may survive in process memory between an upload's requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

import httpx
import pytest

from storage.driver import FileInfo, InvalidOffset, PathNotFound, StorageDriver
from tests.storage.conftest import DriverFactory

pytestmark = pytest.mark.anyio
MiB = 1 << 20


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def read(driver: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in driver.reader(path, offset, length)])


async def digest(driver: StorageDriver, path: str) -> str:
    h = hashlib.sha256()
    async for chunk in driver.reader(path):
        h.update(chunk)
    return h.hexdigest()


async def write(driver: StorageDriver, path: str, content: bytes, append: bool = False,
                batch: int = 4 * MiB, commit: bool = True) -> int:
    writer = await driver.writer(path, append=append)
    for i in range(0, len(content), batch):
        await writer.write(content[i : i + batch])
    size = writer.size
    await (writer.commit() if commit else writer.close())
    return size


@pytest.mark.parametrize("size", [0, 1, 4096, MiB + 3])
async def test_put_get_roundtrip(driver: StorageDriver, size: int) -> None:
    content = data(size, size)
    await driver.put_content(f"/roundtrip/{size}/data", content)
    assert await driver.get_content(f"/roundtrip/{size}/data") == content
    assert (await driver.stat(f"/roundtrip/{size}/data")).size == size


async def test_put_replaces_atomically(driver: StorageDriver) -> None:
    old, new = b"o" * (256 << 10), b"n" * (300 << 10)
    await driver.put_content("/atomic/link", old)
    seen: set[bytes] = set()

    async def reads() -> None:
        for _ in range(20):
            seen.add(await driver.get_content("/atomic/link"))

    async def writes() -> None:
        for i in range(10):
            await driver.put_content("/atomic/link", new if i % 2 == 0 else old)

    await asyncio.gather(reads(), writes(), reads())
    assert seen <= {old, new}
    assert await driver.get_content("/atomic/link") == old


async def test_put_contents_writes_every_object(driver: StorageDriver) -> None:
    await driver.put_content("/group/tags/t/current/link", b"old")
    items = [("/group/blobs/ab/data", data(5000, 1)), ("/group/revisions/ab/link", b"sha256:ab"),
             ("/group/tags/t/current/link", b"new")]
    await driver.put_contents(items)
    for path, content in items:
        assert await driver.get_content(path) == content


async def test_missing_paths_raise_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/present/dir/file", b"x")
    for path in ("/absent", "/present/dir/nofile", "/present/dir"):
        with pytest.raises(PathNotFound):
            await driver.get_content(path)
        with pytest.raises(PathNotFound):
            await read(driver, path)
    for path in ("/absent", "/present/dir/nofile", "/present/di"):
        with pytest.raises(PathNotFound):
            await driver.stat(path)
        with pytest.raises(PathNotFound):
            await driver.list(path)
        with pytest.raises(PathNotFound):
            await driver.move(path, "/elsewhere")
        with pytest.raises(PathNotFound):
            await driver.delete(path)
    with pytest.raises(PathNotFound):
        await driver.list("/present/dir/file")  # a file has no children
    with pytest.raises(PathNotFound):
        [info async for info in driver.walk("/absent")]


async def test_reader_offsets_and_lengths(driver: StorageDriver) -> None:
    content = data(3 * MiB + 17)
    size = len(content)
    await driver.put_content("/ranges/data", content)
    assert await read(driver, "/ranges/data") == content
    for offset, length in [(0, None), (5, None), (5, 100), (MiB - 1, MiB + 2), (size - 10, 100), (size - 1, 1),
                           (0, 0), (7, 0), (size, None), (size, 10), (size, 0)]:
        end = size if length is None else offset + length
        assert await read(driver, "/ranges/data", offset, length) == content[offset:end], (offset, length)
    for offset, length in [(size + 1, None), (size + 1, 5), (size + 1, 0)]:
        with pytest.raises(InvalidOffset):
            await read(driver, "/ranges/data", offset, length)


async def test_reader_of_empty_object(driver: StorageDriver) -> None:
    await driver.put_content("/empty/data", b"")
    assert await read(driver, "/empty/data") == b""
    assert await read(driver, "/empty/data", 0, 10) == b""
    with pytest.raises(InvalidOffset):
        await read(driver, "/empty/data", 1)


async def test_reader_streams_in_bounded_chunks(driver: StorageDriver) -> None:
    await driver.put_content("/chunks/data", data(5 * MiB))
    sizes = [len(chunk) async for chunk in driver.reader("/chunks/data", 1)]
    assert sum(sizes) == 5 * MiB - 1
    assert max(sizes) <= 4 * MiB


async def test_writer_commit(driver: StorageDriver) -> None:
    content = data(6 * MiB + 5)
    writer = await driver.writer("/writer/data")
    assert writer.size == 0
    for piece in (content[:10], content[10 : 3 * MiB], memoryview(content)[3 * MiB :]):
        await writer.write(piece)
    assert writer.size == len(content)
    await writer.commit()
    assert (await driver.stat("/writer/data")).size == len(content)
    assert await read(driver, "/writer/data") == content


async def test_writer_write_parts(driver: StorageDriver) -> None:
    parts = [data(n, n) for n in (1, 0, 256 << 10, 3, MiB + 5)]
    writer = await driver.writer("/parts/data")
    await writer.write_parts(parts[:2])
    await writer.write_parts(parts[2:])
    assert writer.size == sum(map(len, parts))
    await writer.commit()
    assert await read(driver, "/parts/data") == b"".join(parts)


async def test_writer_without_append_truncates(driver: StorageDriver) -> None:
    await driver.put_content("/truncate/data", b"old content")
    assert await write(driver, "/truncate/data", b"new") == 3
    assert await driver.get_content("/truncate/data") == b"new"
    writer = await driver.writer("/truncate/data")
    await writer.commit()
    assert await driver.get_content("/truncate/data") == b""


@pytest.mark.parametrize(
    "chunks",
    [
        [100, 200, 1],  # small chunks only: each one staged in storage, read back on the next append
        [3 * MiB, 3 * MiB, 7 * MiB, 1, 11 * MiB, 2 * MiB],  # crossing S3's 5 MiB part minimum and the chunk size
    ],
    ids=["small", "mixed"],
)
async def test_close_and_append_from_fresh_instances(make_driver: DriverFactory, chunks: list[int]) -> None:
    """Each writer is handed the previous one's ``resume`` token, as the upload store keeps it with its
    hash state: another replica goes on where the last request ended."""
    expected = b""
    token = None
    for i, length in enumerate(chunks):
        driver = make_driver()  # like the next PATCH arriving at another replica
        writer = await driver.writer("/resume/data", append=True, resume=token)
        assert writer.size == len(expected)
        chunk = data(length, i)
        await writer.write(chunk[: length // 2])
        await writer.write(chunk[length // 2 :])
        expected += chunk
        assert writer.size == len(expected)
        await writer.close()
        token = writer.resume
        resumed = await make_driver().writer("/resume/data", append=True, resume=token)  # a request with no body
        assert resumed.size == len(expected)
        await resumed.close()
        assert resumed.resume == token
    final = make_driver()
    writer = await final.writer("/resume/data", append=True, resume=token)
    assert writer.size == len(expected)
    await writer.commit()
    assert await digest(final, "/resume/data") == hashlib.sha256(expected).hexdigest()
    tail = min(len(expected), 1000)
    assert await read(final, "/resume/data", len(expected) - tail) == expected[-tail:]


async def test_append_without_writes_keeps_object(make_driver: DriverFactory) -> None:
    driver = make_driver()
    await driver.put_content("/keep/data", b"0123456789")
    writer = await make_driver().writer("/keep/data", append=True)
    assert writer.size == 10
    await writer.close()
    assert await driver.get_content("/keep/data") == b"0123456789"


async def test_append_to_missing_path_starts_empty(driver: StorageDriver) -> None:
    writer = await driver.writer("/fresh/upload/data", append=True)
    assert writer.size == 0
    await writer.write(b"abc")
    await writer.commit()
    assert await driver.get_content("/fresh/upload/data") == b"abc"


@pytest.mark.parametrize("size", [10, 7 * MiB])
async def test_cancel_discards(make_driver: DriverFactory, size: int) -> None:
    driver = make_driver()
    writer = await driver.writer("/cancel/data")
    await writer.write(data(size))
    await writer.cancel()
    with pytest.raises(PathNotFound):
        await driver.stat("/cancel/data")
    await write(driver, "/cancel/data", b"first", commit=False)
    writer = await make_driver().writer("/cancel/data", append=True)
    await writer.write(data(size))
    await writer.cancel()
    with pytest.raises(PathNotFound):
        await driver.stat("/cancel/data")


@pytest.mark.parametrize("before,after", [(0, 10), (3 * MiB, 7 * MiB), (6 * MiB, 1)],
                         ids=["fresh", "past-a-part", "after-a-part"])
async def test_discard_leaves_session_as_it_was(make_driver: DriverFactory, before: int, after: int) -> None:
    """A refused request's bytes vanish: the session continues from where it was before the request."""
    first = data(before, 1)
    token = None
    if before:
        writer = await make_driver().writer("/discard/data", append=True)
        await writer.write(first)
        await writer.close()
        token = writer.resume
    writer = await make_driver().writer("/discard/data", append=True, resume=token)
    await writer.write(data(after, 2))
    await writer.discard()
    writer = await make_driver().writer("/discard/data", append=True, resume=token)
    assert writer.size == before
    await writer.write(b"tail")
    await writer.commit()
    assert await digest(make_driver(), "/discard/data") == hashlib.sha256(first + b"tail").hexdigest()


async def test_large_multipart_write(driver: StorageDriver) -> None:
    content = data(40 * MiB, 40)
    t0 = time.monotonic()
    assert await write(driver, "/large/data", content) == len(content)
    written = time.monotonic() - t0
    assert (await driver.stat("/large/data")).size == len(content)
    assert await digest(driver, "/large/data") == hashlib.sha256(content).hexdigest()
    print(f"{driver.name}: 40 MiB written in {written:.2f}s, read back in {time.monotonic() - t0 - written:.2f}s")


async def test_list_sorted_direct_children(driver: StorageDriver) -> None:
    for path in ("/l/b/d", "/l/b/c", "/l/a", "/l/c-x", "/l/ab", "/l/b/e/f", "/lz"):
        await driver.put_content(path, b"x")
    assert await driver.list("/l") == ["a", "ab", "b", "c-x"]
    assert await driver.list("/l/b") == ["c", "d", "e"]
    root = await driver.list("/")
    assert "l" in root and "lz" in root and root == sorted(root)


async def test_list_many_entries(driver: StorageDriver) -> None:
    names = [f"{i:04d}" for i in range(1030)]  # more than one S3 listing page
    await asyncio.gather(*(driver.put_content(f"/many/{n}/link", b"x") for n in names))
    assert await driver.list("/many") == names


async def test_stat_file_and_directory(driver: StorageDriver) -> None:
    before = time.time()
    await driver.put_content("/st/dir/file", b"12345")
    info = await driver.stat("/st/dir/file")
    assert (info.path, info.size, info.is_dir) == ("/st/dir/file", 5, False)
    assert before - 120 < info.modified < time.time() + 120
    for path in ("/st", "/st/dir"):
        info = await driver.stat(path)
        assert info.is_dir and info.path == path


async def test_stat_file_is_for_objects_only(driver: StorageDriver) -> None:
    await driver.put_content("/sf/dir/file", b"12345")
    info = await driver.stat_file("/sf/dir/file")
    assert (info.path, info.size, info.is_dir) == ("/sf/dir/file", 5, False)
    for path in ("/sf/dir", "/sf/missing"):
        with pytest.raises(PathNotFound):
            await driver.stat_file(path)


async def test_move(make_driver: DriverFactory) -> None:
    driver = make_driver()
    await driver.put_content("/mv/src", b"content")
    await driver.move("/mv/src", "/mv/new/dir/dest")
    assert await driver.get_content("/mv/new/dir/dest") == b"content"
    with pytest.raises(PathNotFound):
        await driver.stat("/mv/src")
    await driver.put_content("/mv/other", b"replacement")
    await driver.move("/mv/other", "/mv/new/dir/dest")
    assert await driver.get_content("/mv/new/dir/dest") == b"replacement"
    await driver.move("/mv/new/dir/dest", "/mv/new/dir/dest")
    assert await driver.get_content("/mv/new/dir/dest") == b"replacement"


async def test_move_large_object(driver: StorageDriver) -> None:
    content = data(19 * MiB, 19)  # above the S3 test driver's multipart copy threshold: 4 ranged part copies
    await write(driver, "/mvbig/upload", content)
    await driver.move("/mvbig/upload", "/mvbig/blob/data")
    assert (await driver.stat("/mvbig/blob/data")).size == len(content)
    assert await digest(driver, "/mvbig/blob/data") == hashlib.sha256(content).hexdigest()
    with pytest.raises(PathNotFound):
        await driver.stat("/mvbig/upload")


async def test_delete_file_and_tree(driver: StorageDriver) -> None:
    for path in ("/del/tree/a", "/del/tree/sub/b", "/del/tree/sub/deeper/c", "/del/tree-sibling", "/del/treex/d",
                 "/del/file"):
        await driver.put_content(path, b"x")
    await driver.delete("/del/file")
    with pytest.raises(PathNotFound):
        await driver.stat("/del/file")
    await driver.delete("/del/tree")
    for path in ("/del/tree", "/del/tree/a", "/del/tree/sub/deeper/c"):
        with pytest.raises(PathNotFound):
            await driver.stat(path)
    assert await driver.list("/del") == ["tree-sibling", "treex"]
    assert await driver.get_content("/del/treex/d") == b"x"


async def test_delete_objects_in_groups(driver: StorageDriver) -> None:
    """Named files of many directories at once (missing ones no error), or whole directories; on the
    filesystem each named directory goes with what else it holds."""
    for n in range(1200):  # more than one DeleteObjects request
        await driver.put_content(f"/dm/blobs/{n:04d}/data", b"x")
    await driver.put_content("/dm/blobs/0000/condemned", b"x")
    await driver.put_content("/dm/tree/a/b", b"x")
    await driver.put_content("/dm/kept/data", b"x")
    groups: list[tuple[str, list[str] | None]] = [
        (f"/dm/blobs/{n:04d}", [f"/dm/blobs/{n:04d}/data", f"/dm/blobs/{n:04d}/condemned"]) for n in range(1200)]
    await driver.delete_objects([*groups, ("/dm/tree", None), ("/dm/gone", ["/dm/gone/data"])])
    left = [i.path async for i in driver.walk("/dm")]
    assert left in (["/dm/kept", "/dm/kept/data"], ["/dm/blobs", "/dm/kept", "/dm/kept/data"])  # (an empty parent)
    await driver.delete_objects([])


async def test_walk_depth_first_sorted(driver: StorageDriver) -> None:
    for path, size in (("/w/b/e", 2), ("/w/a/x", 1), ("/w/a-b", 3), ("/w/b/c/d", 4)):
        await driver.put_content(path, b"x" * size)
    infos: list[FileInfo] = [i async for i in driver.walk("/w")]
    walked = [(i.path, i.is_dir, i.size if not i.is_dir else None) for i in infos]
    assert walked == [
        ("/w/a", True, None), ("/w/a/x", False, 1), ("/w/a-b", False, 3), ("/w/b", True, None),
        ("/w/b/c", True, None), ("/w/b/c/d", False, 4), ("/w/b/e", False, 2),
    ]
    with pytest.raises(PathNotFound):
        [i async for i in driver.walk("/w/a/x")]  # a file is no directory to walk
    with pytest.raises(PathNotFound):
        [i async for i in driver.walk("/w/missing")]


async def test_walk_of_many_entries_in_order(driver: StorageDriver) -> None:
    """More entries than one step of a walk reads (the filesystem's 4,096; S3's 1,000 keys a listing)."""
    await asyncio.gather(*(driver.put_content(f"/wm/{n // 100:02d}/{n % 100:02d}", b"x") for n in range(5000)))
    files = [i.path async for i in driver.walk("/wm") if not i.is_dir]
    assert files == [f"/wm/{n // 100:02d}/{n % 100:02d}" for n in range(5000)]


async def test_list_nested(driver: StorageDriver) -> None:
    for path in ("/n/sha256/aa/link", "/n/sha256/bb/link", "/n/sha512/cc/link", "/n/file", "/n/x-y/z",
                 "/n/x/deep/er/link"):
        await driver.put_content(path, b"x")
    assert await driver.list_nested("/n", 2) == ["sha256/aa", "sha256/bb", "sha512/cc", "x/deep", "x-y/z"]
    assert await driver.list_nested("/n", 1) == await driver.list("/n")
    assert await driver.list_nested("/n/sha512", 2) == ["cc/link"]
    with pytest.raises(PathNotFound):
        await driver.list_nested("/missing", 2)


async def test_list_keys(driver: StorageDriver, backend: str) -> None:
    for path in ("/k/a/_l/1", "/k/a/_l/2", "/k/a/_m/1", "/k/a-b/_m/1", "/k/a/b/_m/1", "/k/c"):
        await driver.put_content(path, b"x")
    page = await driver.list_keys("/k", "", "/_m/")
    if page is None:
        assert backend == "filesystem"  # no key order: callers list directory by directory
        return
    assert page.names == ["a-b/_m/", "a/_l/1", "a/_l/2", "a/_m/", "a/b/_m/", "c"] and not page.truncated
    seen = []
    start = ""
    while True:
        page = await driver.list_keys("/k", start, "/_m/", limit=2)
        seen += page.names
        if not page.truncated:
            break
        start = page.next_start
    assert seen == ["a-b/_m/", "a/_l/1", "a/_l/2", "a/_m/", "a/b/_m/", "c"]
    assert (await driver.list_keys("/k", "a/_l/1", "")).names == ["a/_l/2", "a/_m/1", "a/b/_m/1", "c"]
    assert (await driver.list_keys("/nothing")).names == []


async def test_delete_file(driver: StorageDriver) -> None:
    await driver.put_content("/df/a", b"x")
    await driver.put_content("/df/b", b"x")
    await driver.delete_file("/df/a")
    await driver.delete_file("/df/missing")
    assert await driver.list("/df") == ["b"]


async def test_concurrent_writers(make_driver: DriverFactory) -> None:
    driver = make_driver()
    contents = {f"/conc/{i}/data": data(3 * MiB + i, i) for i in range(6)}

    async def one(path: str, content: bytes) -> None:
        writer = await driver.writer(path)
        for j in range(0, len(content), MiB):
            await writer.write(content[j : j + MiB])
        await writer.commit()

    await asyncio.gather(*(one(p, c) for p, c in contents.items()))
    for path, content in contents.items():
        assert await digest(driver, path) == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("path", ["/a/../b", "/..", "/a/./b", "relative/path", "", "/a//b", "/trailing/", "/sp ace",
                                  "/nul\0", "/ü"])
async def test_invalid_paths_refused(driver: StorageDriver, path: str) -> None:
    with pytest.raises(ValueError):
        await driver.put_content(path, b"x")
    with pytest.raises(ValueError):
        await driver.get_content(path)


async def test_list_of_the_root_and_a_valid_path_alphabet(driver: StorageDriver) -> None:
    """Distribution's path alphabet ([A-Za-z0-9._-] components) is accepted by every driver."""
    await driver.put_content("/Aa09._-/x", b"x")
    assert await driver.get_content("/Aa09._-/x") == b"x"
    assert "Aa09._-" in await driver.list("/")


async def test_redirect_url_or_local_path_serve_the_object(driver: StorageDriver) -> None:
    """A driver may offer a URL to fetch an object from or a local file holding it; either has its bytes."""
    content = data(1000, 7)
    await driver.put_content("/direct/blob/data", content)
    url = await driver.redirect_url("/direct/blob/data", "GET")
    if url is not None:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200 and response.content == content
    local = driver.local_path("/direct/blob/data")
    if local is not None:
        with open(local, "rb") as f:
            assert f.read() == content
    assert (url is None) != (local is None), "each backend here offers exactly one way"
    assert await driver.redirect_url("/direct/blob/data", "PUT") is None
