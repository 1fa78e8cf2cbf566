"""glibc malloc settings for a process that moves blobs in pieces of 64 KiB to a few MiB.

With glibc's defaults, a block above the mmap threshold (128 KiB at start, raised only as such blocks
are freed) is a fresh mmap, and a heap top above the trim threshold is handed back to the kernel: each
received or read piece then costs page faults and the zeroing of new pages. The ASGI server alone,
receiving a body the app discards (``python -m bench limits``' bare push under uvicorn), spent 1.0
CPU-s per GB with the defaults and 0.17 with the thresholds below. Fixed thresholds keep those pieces
in the heap; the trim threshold bounds what an idle process keeps above what it uses, and fewer arenas
bound how many such reserves there are (peak RSS during a 2 GiB push after the bench's pulls: 83-124
MiB without the arena limit, 78 with it).
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for it on 64-bit systems
TRIM_THRESHOLD = 16 << 20  # what an idle process may keep above its use; 8-128 MiB measured alike
ARENA_MAX = 2  # each arena (up to 8 per core by default, for 16 storage threads) keeps its own reserve


def operator_chose() -> bool:
    """The environment sets malloc parameters (``GLIBC_TUNABLES`` or the older ``MALLOC_*``): theirs win."""
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(k.startswith("MALLOC_") for k in os.environ)


def tune() -> bool:
    """Set the thresholds in this process; False where the operator chose or the C library is not glibc."""
    if operator_chose():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt (macOS)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # musl's mallopt is a stub returning 0: nothing changed, and False says so
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, ARENA_MAX))
    return all([mallopt(parameter, value) for parameter, value in settings])
