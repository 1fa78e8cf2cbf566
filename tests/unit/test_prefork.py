"""What the supervisor builds before it forks its workers (registry/http/workers.py) must be safe to share:
building the app starts no thread (a fork copies only the calling thread; a lock another thread held stays
held for ever in the workers) and opens no connection (two workers would write into one socket)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from registry.config import parse
from registry.http.app import create_app


def sockets() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                found.add(int(name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("storage", ["filesystem", "s3"])
def test_building_the_app_starts_no_thread_and_opens_no_socket(tmp_path: Path, storage: str) -> None:
    settings = {
        "filesystem": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        # nothing listens there: a request made while building would fail, or hang, and be seen below
        "s3": {"s3": {"bucket": "b", "region": "us-east-1", "regionendpoint": "http://127.0.0.1:9",
                      "accesskey": "k", "secretkey": "s"}},
    }[storage]
    config = parse({"storage": settings, "http": {"debug": {"addr": "127.0.0.1:0",
                                                            "prometheus": {"enabled": True}}},
                    "notifications": {"endpoints": [{"name": "hook", "url": "http://127.0.0.1:9/events"}]},
                    "proxy": {"remoteurl": "http://127.0.0.1:9"}})
    threads, socks = threading.active_count(), sockets()
    app = create_app(config)
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    assert sockets() == socks
    assert app.background  # until the supervisor says which worker runs the periodic jobs


def test_building_the_app_on_a_database_opens_no_connection(tmp_path: Path) -> None:
    """auth.database: the engine, its pool and threads are made on first use, in each worker; a
    connection opened before the fork would be shared by every worker (SQLite's file locks are per
    process, PostgreSQL's protocol per socket)."""
    config = parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                    "auth": {"database": {}}})
    threads, files = threading.active_count(), set(os.listdir("/proc/self/fd"))
    app = create_app(config)
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    opened = {os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - files
              if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not [path for path in opened if "moorage.db" in path], opened
    assert app.registry.database is not None and app.registry.database._engine is None
    assert not (tmp_path / "data" / "moorage.db").exists()
