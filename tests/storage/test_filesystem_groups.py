"""The filesystem driver's grouped small writes (``put_contents``): all or nothing, no temporary files left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.driver import PathNotFound
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
