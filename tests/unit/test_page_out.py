"""The supervisor gives back the pages of its read-only file mappings once its workers listen
(registry/http/workers.py ``page_out_files``): they leave its memory, their contents stay what the files
hold, and writable mappings are left alone.  Run in a child interpreter, so that no other process maps
the test's files (the kernel keeps a page another process maps) and pytest keeps its own pages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import hashlib, mmap, os, sys
    from registry.http.workers import page_out_files

    def rss_file_kib():
        return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("RssFile:")))

    def touch(view):
        return hashlib.sha256(view[:]).hexdigest()

    size = 16 << 20
    opened = []
    for name, access in (("readonly", mmap.ACCESS_READ), ("writable", mmap.ACCESS_WRITE)):
        path = os.path.join(sys.argv[1], name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        f = open(path, "r+b")
        opened.append((mmap.mmap(f.fileno(), size, access=access), f))
    (readonly, _), (writable, _) = opened
    before_hash, _ = touch(readonly), touch(writable)
    before = rss_file_kib()
    accepted = page_out_files()
    after = rss_file_kib()
    print(accepted, before, after, touch(readonly) == before_hash)
""")


def test_read_only_file_pages_leave_memory_and_read_back_the_same(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    accepted, before, after, same = done.stdout.split()
    assert int(accepted) > 0  # Linux 5.4 or later, as CI runs
    given_back = int(before) - int(after)
    # the read-only file's 16 MiB go; the writable one's 16 MiB stay resident
    assert 14 * 1024 <= given_back < 30 * 1024, (before, after)
    assert same == "True"
