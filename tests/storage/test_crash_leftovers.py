"""What a crash mid-write leaves behind is never listed, and is cleaned up (issue 14, defect 4; issue 24,
item 6: at the next start when its writer is dead)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import paths
from storage.digests import digest_bytes
from storage.driver import StorageDriver
from storage.driver.filesystem import (
    BOOT_ID,
    PID_NAMESPACE,
    TEMP_DIR,
    TEMP_PREFIX,
    FilesystemDriver,
    temp_owner,
)
from storage.manifests import TagStore

pytestmark = pytest.mark.anyio
DIGEST = digest_bytes(b"manifest")


async def test_tag_without_current_link_is_not_listed(driver: StorageDriver) -> None:
    """Killed between the index link and the current link: the tag was never acknowledged."""
    tags = TagStore(driver)
    await tags.tag("team/app", "whole", DIGEST)
    await driver.put_content(paths.tag_index_link("team/app", "half", DIGEST), str(DIGEST).encode())
    assert await tags.list("team/app") == ["whole"]
    assert await tags.tags_of("team/app", DIGEST) == ["whole"]


async def test_tag_whose_current_holds_only_a_temp_file_is_not_listed(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    tags = TagStore(driver)
    await tags.tag("team/app", "whole", DIGEST)
    current = Path(driver.full_path(paths.tag_current_link("team/app", "torn"))).parent
    current.mkdir(parents=True)
    (current / f"{TEMP_PREFIX}0123").write_bytes(b"sha256:01")
    assert await tags.list("team/app") == ["whole"]
    await driver.close()


async def test_writes_leave_no_temp_file_beside_the_object(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    await TagStore(driver).tag("team/app", "v1", DIGEST)
    current = Path(driver.full_path(paths.tag_current_link("team/app", "v1"))).parent
    assert os.listdir(current) == ["link"]
    await driver.close()


async def test_stale_temp_files_are_removed_at_start_up(tmp_path: Path) -> None:
    temp_dir = tmp_path / TEMP_DIR
    (temp_dir / "a").mkdir(parents=True)  # a shard
    stale, fresh = temp_dir / f"{TEMP_PREFIX}stale", temp_dir / f"{TEMP_PREFIX}fresh"
    stale_in_shard = temp_dir / "a" / f"{TEMP_PREFIX}stale"
    for leftover in (stale, fresh, stale_in_shard):
        leftover.write_bytes(b"x")  # fresh: another process sharing the root may be writing it right now
    hour_ago = time.time() - 3600
    for leftover in (stale, stale_in_shard):
        os.utime(leftover, (hour_ago, hour_ago))
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    assert not stale.exists() and not stale_in_shard.exists() and fresh.exists()
    await driver.close()


async def test_read_only_root_without_temp_dir_still_serves_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry serving a read-only volume (that never had ``.moorage-tmp/``) starts and reads."""
    writer = FilesystemDriver(str(tmp_path), fsync=False)
    await writer.put_content("/docker/registry/v2/some/link", b"sha256:01")
    await writer.close()
    shutil.rmtree(tmp_path / TEMP_DIR)
    real_makedirs = os.makedirs

    def read_only(path: str, *args: object, **kwargs: object) -> None:
        if os.path.exists(path):
            return real_makedirs(path, *args, **kwargs)  # type: ignore[arg-type]
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(os, "makedirs", read_only)
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    assert await driver.get_content("/docker/registry/v2/some/link") == b"sha256:01"
    with pytest.raises(OSError):
        await driver.put_content("/docker/registry/v2/other/link", b"x")
    monkeypatch.undo()
    await driver.put_content("/docker/registry/v2/other/link", b"x")  # writable again: the directory comes back
    assert await driver.get_content("/docker/registry/v2/other/link") == b"x"
    await driver.close()


async def test_a_restart_removes_its_dead_predecessors_temp_files_at_once(tmp_path: Path) -> None:
    """Issue 24, item 6: a process killed mid-write leaves a temporary file; the next start removes it at
    once (its writer is dead), not ten minutes later, while a live process's file stays, however old, and
    so does one whose pid is dead here but belongs to another pid namespace (a container sharing the
    volume on the same host) or another boot."""
    driver = FilesystemDriver(str(tmp_path), fsync=False)
    await driver.close()
    shard = tmp_path / TEMP_DIR / "0"
    shard.mkdir(exist_ok=True)
    killed = subprocess.Popen([sys.executable, "-c", "import os, time; time.sleep(60)"])
    dead_owner = owner_of(killed.pid)
    killed.kill()
    killed.wait()
    dead = shard / f"{TEMP_PREFIX}{dead_owner}-0000000000000001"
    live = shard / f"{TEMP_PREFIX}{temp_owner()}-0000000000000002"  # this process: alive
    other_boot = shard / f"{TEMP_PREFIX}0123456789ab.{PID_NAMESPACE}.{killed.pid}.1-0000000000000003"
    other_container = shard / f"{TEMP_PREFIX}{BOOT_ID}.1.{killed.pid}.1-0000000000000004"
    for leftover in (dead, live, other_boot, other_container):
        leftover.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(live, (hour_ago, hour_ago))
    restarted = FilesystemDriver(str(tmp_path), fsync=False)
    assert not dead.exists()
    assert live.exists() and other_boot.exists() and other_container.exists()
    await restarted.close()


def owner_of(pid: int) -> str:
    """What ``temp_owner`` gives in process ``pid`` (its boot, pid namespace, pid and start time)."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()
    return f"{BOOT_ID}.{PID_NAMESPACE}.{pid}.{fields[19].decode()}"
