"""registry.http.allocator: blob-sized pieces come from the heap, not from fresh mmaps, once tuned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry.http import allocator

# In a fresh interpreter: allocate a 1 MiB bytes object and report how many mmapped blocks glibc holds
# while it lives (mallinfo2().hblks), with or without the tuning.
PROBE = """
import ctypes, sys
from registry.http import allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
tuned = allocator.tune() if sys.argv[1] == "tune" else False
before = mallinfo2().hblks
piece = bytes(1 << 20)
print(tuned, mallinfo2().hblks - before)
"""


def probe(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0], int(out[1])


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                           reason="LOUD SKIP: mallopt and mallinfo2 are glibc's; this C library is not glibc")


@glibc
def test_untuned_glibc_maps_a_fresh_block_per_piece() -> None:
    assert probe("none") == ("False", 1)  # the cost the tuning removes: page faults on every new piece


@glibc
def test_tuned_pieces_come_from_the_heap() -> None:
    assert probe("tune") == ("True", 0)


@glibc
def test_the_operators_malloc_settings_win() -> None:
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}
    assert probe("tune", tunables) == ("False", 1)
    assert probe("tune", {"MALLOC_ARENA_MAX": "2"})[0] == "False"


def test_operator_chose_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(key)
    assert not allocator.operator_chose()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0")  # not a malloc setting
    assert not allocator.operator_chose()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    assert allocator.operator_chose()
